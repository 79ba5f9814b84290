"""structured reports: reports, versions, templates, phrases, events (outbox)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 02:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_fk", sa.Integer(), nullable=False),
        sa.Column("institution_fk", sa.Integer(), nullable=False),
        sa.Column("accession_number", sa.String(64), nullable=False),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("author_fk", sa.Integer(), nullable=True),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("signer_fk", sa.Integer(), nullable=True),
        sa.Column("signer", sa.String(128), nullable=False),
        _ts("signed_at", True),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("lock_user_fk", sa.Integer(), nullable=True),
        sa.Column("lock_holder", sa.String(128), nullable=False),
        _ts("lock_expires_at", True),
        sa.Column("sr_sop_uid", sa.String(64), nullable=False),
        sa.Column("pdf_sop_uid", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(["study_fk"], ["studies.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_fk"),
    )
    op.create_index("ix_reports_institution_fk", "reports", ["institution_fk"])
    op.create_index("ix_reports_accession_number", "reports", ["accession_number"])
    op.create_index("ix_reports_status", "reports", ["status"])

    op.create_table(
        "report_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_fk", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("user_fk", sa.Integer(), nullable=True),
        sa.Column("user_name", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(["report_fk"], ["reports.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("report_fk", "version", name="uq_report_version"),
    )

    op.create_table(
        "report_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("institution_fk", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("institution_fk", "name", name="uq_report_template_name"),
    )
    op.create_index("ix_report_templates_institution_fk", "report_templates", ["institution_fk"])

    op.create_table(
        "report_phrases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("institution_fk", sa.Integer(), nullable=False),
        sa.Column("user_fk", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(["user_fk"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_report_phrases_owner", "report_phrases", ["institution_fk", "user_fk"])

    op.create_table(
        "report_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("report_fk", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("institution_fk", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("accession_number", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.Column("acknowledged_by", sa.String(128), nullable=False),
        _ts("acknowledged_at", True),
        sa.ForeignKeyConstraint(["report_fk"], ["reports.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_report_events_kind", "report_events", ["kind"])
    op.create_index("ix_report_events_institution_fk", "report_events", ["institution_fk"])

    op.create_table(
        "report_event_cursors",
        sa.Column("consumer", sa.String(64), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("consumer"),
    )


def downgrade() -> None:
    for table in (
        "report_event_cursors",
        "report_events",
        "report_phrases",
        "report_templates",
        "report_versions",
        "reports",
    ):
        op.drop_table(table)
