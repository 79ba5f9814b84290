"""share links that cover a patient's exam history (scope study | patient)

A ``patient`` link opens every study published to its patient at its
institution (the study it was made for included); ``study`` links, all links
made before this revision, open their one study.  ``patient_fk`` names the
patient (no foreign key: adding one to SQLite means rebuilding ``shares``,
whose dependents would cascade; patients are removed with their studies,
whose deletion removes the links).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22 06:15:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "shares",
        sa.Column("scope", sa.String(16), nullable=False, server_default="study"),
    )
    op.add_column("shares", sa.Column("patient_fk", sa.Integer(), nullable=True))
    op.create_index("ix_shares_patient_fk", "shares", ["patient_fk"])


def downgrade() -> None:
    op.drop_index("ix_shares_patient_fk", table_name="shares")
    op.drop_column("shares", "patient_fk")
    op.drop_column("shares", "scope")
