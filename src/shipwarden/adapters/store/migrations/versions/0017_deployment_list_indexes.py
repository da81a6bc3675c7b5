"""deployments: index created_at, and (service, created_at), for the newest-first list

``GET /deployments`` (and ``shipwarden history``) read the newest deployments first, of all
services or of one: ``ORDER BY created_at DESC LIMIT n``.  Without an index on ``created_at``
every such read scanned and sorted the whole table — a cost that grew with every deployment
ever made, on the API's most frequent request.  With these indexes the read walks the newest
``n`` entries of an index backwards, however long the history.

Revision ID: 0017_deployment_list_indexes
Revises: 0015_main_commits
Create Date: 2026-12-03
"""

from alembic import op

revision = "0017_deployment_list_indexes"
down_revision = "0015_main_commits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deployments_created_at", "deployments", ["created_at"])
    op.create_index("ix_deployments_service_created_at", "deployments", ["service", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_deployments_service_created_at", table_name="deployments")
    op.drop_index("ix_deployments_created_at", table_name="deployments")
