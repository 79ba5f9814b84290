"""patients per institution

A patient ID belongs to the institution that issued it: the same ID at two
hospitals is two patients, and one hospital's patient names must not match
another hospital's searches.  Existing patients belong to the institution of
their studies (the default one: institutions arrived with 0004).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 00:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("institution_fk", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.drop_constraint("uq_patient_id_issuer", type_="unique")
        batch_op.create_unique_constraint(
            "uq_patient_per_institution", ["patient_id", "issuer", "institution_fk"]
        )


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_constraint("uq_patient_per_institution", type_="unique")
        batch_op.create_unique_constraint("uq_patient_id_issuer", ["patient_id", "issuer"])
        batch_op.drop_column("institution_fk")
