"""delivery repositories: which trial repository each outbox item was delivered to

Revision ID: 0006
Revises: 0005

Items delivered before this revision get no repository here: the first run
of the upgraded adapter attributes them to the repository configured then
(``adapter.delivery.redelivery.note``), since the migration cannot read the config.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_repositories",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint"),
    )
    op.add_column("outbox", sa.Column("delivered_to", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("delivered_to")
    op.drop_table("delivery_repositories")
