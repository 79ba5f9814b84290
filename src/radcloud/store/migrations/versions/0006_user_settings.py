"""user settings

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 00:55:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_settings",
        sa.Column("user_fk", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_fk"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_fk"),
    )


def downgrade() -> None:
    op.drop_table("user_settings")
