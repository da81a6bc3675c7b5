"""zones: a deployment's wave (the zone it is rolling out in) and why it is paused

``wave`` indexes the service's zone order (E2): the rollout state is (phase, wave, step), all
persisted with the transition before its effect.  ``pause_cause`` says who paused a deployment
("operator" or "analysis"), which the reconciler used to read back from the reason's text.

Revision ID: 0016_zones
Revises: 0013_oncall
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_zones"
down_revision = "0013_oncall"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("wave", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("pause_cause", sa.String(16), nullable=True))
    # deployments paused before this revision: the reason said why
    op.execute(
        "UPDATE deployments SET pause_cause = 'analysis' "
        "WHERE paused AND reason LIKE 'paused: analysis inconclusive%'"
    )
    op.execute("UPDATE deployments SET pause_cause = 'operator' WHERE paused AND pause_cause IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("pause_cause")
        batch.drop_column("wave")
