"""codes outside the protocol: the standard code of each resource triaged as not a protocol concept

A resource whose only codes are standard codes (LOINC, SNOMED CT, RxNorm, …)
the catalog does not hold, and which do not look like a protocol concept,
is no data manager's problem: the sync records it with outcome ``outside``
and no issue (``adapter.mapping.triage``).  Coverage lists such codes, one
line each, so these two columns keep the code ("system|code") and its
display beside the outcome.

Resources mapped before this revision keep their outcome until the next
pass re-maps them, which it does for all of them: the catalog version
changes with the synonym table the triage reads.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("source_resources", sa.Column("code", sa.String(length=300), nullable=True))
    op.add_column("source_resources", sa.Column("code_display", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("source_resources", schema=None) as batch_op:
        batch_op.drop_column("code_display")
        batch_op.drop_column("code")
