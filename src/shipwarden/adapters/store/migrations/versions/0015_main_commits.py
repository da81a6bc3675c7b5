"""main_commits, main_heads: every commit that reaches main is judged (D9)

``main_heads`` is the head whose commits were judged, moved by compare-and-set with the verdicts;
``main_commits`` holds one verdict per commit per arrival (deploy / covered / violation), the
effect it still owes (a deployment, an alert) and, for a violation, who accepted it.

Revision ID: 0015_main_commits
Revises: 0011_access_generation
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_main_commits"
down_revision = "0012_alerting"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "main_heads",
        sa.Column("branch", sa.String(256), nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("branch"),
    )
    op.create_table(
        "main_commits",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("branch", sa.String(256), nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("arrival", sa.String(64), nullable=False),
        sa.Column("previous", sa.String(64), nullable=True),
        sa.Column("via", sa.String(64), nullable=False),
        sa.Column("parents", sa.JSON(), nullable=False),
        sa.Column("author", sa.String(256), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("change_id", sa.String(32), nullable=True),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("effect", sa.String(16), nullable=False),
        sa.Column("effect_detail", sa.JSON(), nullable=False),
        sa.Column("seen_at", sa.Double(), nullable=False),
        sa.Column("accepted_by", sa.String(128), nullable=True),
        sa.Column("accepted_at", sa.Double(), nullable=True),
        sa.Column("accept_reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_main_commits_sha", "main_commits", ["sha"])
    op.create_index("ix_main_commits_verdict", "main_commits", ["verdict"])
    op.create_index("ix_main_commits_branch_verdict", "main_commits", ["branch", "verdict", "id"])


def downgrade() -> None:
    op.drop_table("main_commits")
    op.drop_table("main_heads")
