"""index issue_sources by (site, source): replacing a source's issues no longer scans the table

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_issue_sources_source", "issue_sources", ["site", "source"])


def downgrade() -> None:
    op.drop_index("ix_issue_sources_source", table_name="issue_sources")
