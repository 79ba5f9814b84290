"""background jobs and analysis results (with versions: AI output vs human corrections)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 03:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("args_json", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("message", sa.String(256), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("result_json", sa.Text(), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("dedupe_key", sa.String(200), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("worker", sa.String(128), nullable=False),
        _ts("run_after"),
        _ts("lease_until", True),
        _ts("heartbeat_at", True),
        _ts("created_at"),
        _ts("started_at", True),
        _ts("finished_at", True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_jobs_state_run_after", "jobs", ["state", "run_after"])
    op.create_index("ix_jobs_study_uid", "jobs", ["study_uid"])
    op.create_index("ix_jobs_series_uid", "jobs", ["series_uid"])
    op.create_index("ix_jobs_dedupe_key", "jobs", ["dedupe_key"])

    op.create_table(
        "analysis_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_fk", sa.Integer(), nullable=False),
        sa.Column("study_fk", sa.Integer(), nullable=False),
        sa.Column("module", sa.String(64), nullable=False),
        sa.Column("module_version", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("ai_version", sa.Integer(), nullable=False),
        sa.Column("job_fk", sa.Integer(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(["series_fk"], ["series.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["study_fk"], ["studies.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("series_fk", "module", name="uq_analysis_series_module"),
    )
    op.create_index("ix_analysis_results_series_fk", "analysis_results", ["series_fk"])
    op.create_index("ix_analysis_results_study_fk", "analysis_results", ["study_fk"])

    op.create_table(
        "analysis_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_fk", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("findings_json", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("report_json", sa.Text(), nullable=False),
        sa.Column("seg_sop_uid", sa.String(64), nullable=False),
        sa.Column("sr_sop_uid", sa.String(64), nullable=False),
        sa.Column("outputs_json", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(["result_fk"], ["analysis_results.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("result_fk", "version", name="uq_analysis_version"),
    )
    op.create_index("ix_analysis_versions_result_fk", "analysis_versions", ["result_fk"])


def downgrade() -> None:
    op.drop_table("analysis_versions")
    op.drop_table("analysis_results")
    op.drop_table("jobs")
