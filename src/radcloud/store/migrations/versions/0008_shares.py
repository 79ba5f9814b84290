"""share links and patient access: shares, share_sessions

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 03:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "shares",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("study_fk", sa.Integer(), nullable=False),
        sa.Column("institution_fk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("deidentify", sa.Boolean(), nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        _ts("expires_at"),
        sa.Column("max_views", sa.Integer(), nullable=True),
        sa.Column("views", sa.Integer(), nullable=False),
        sa.Column("verify_method", sa.String(16), nullable=False),
        sa.Column("verify_hash", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("revoked_at", True),
        sa.Column("revoked_by", sa.String(128), nullable=False),
        sa.Column("parent_fk", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_by_fk", sa.Integer(), nullable=True),
        _ts("created_at"),
        _ts("last_opened_at", True),
        sa.ForeignKeyConstraint(["study_fk"], ["studies.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["parent_fk"], ["shares.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_shares_study_fk", "shares", ["study_fk"])
    op.create_index("ix_shares_institution_fk", "shares", ["institution_fk"])
    op.create_index("ix_shares_parent_fk", "shares", ["parent_fk"])
    op.create_table(
        "share_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("share_fk", sa.Integer(), nullable=False),
        sa.Column("session_hash", sa.String(64), nullable=False),
        _ts("expires_at"),
        sa.Column("source", sa.String(64), nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(["share_fk"], ["shares.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_hash"),
    )
    op.create_index("ix_share_sessions_share_fk", "share_sessions", ["share_fk"])


def downgrade() -> None:
    op.drop_index("ix_share_sessions_share_fk", table_name="share_sessions")
    op.drop_table("share_sessions")
    op.drop_index("ix_shares_parent_fk", table_name="shares")
    op.drop_index("ix_shares_institution_fk", table_name="shares")
    op.drop_index("ix_shares_study_fk", table_name="shares")
    op.drop_table("shares")
