"""no stored body for resources of patients not on the roster: strip the ones kept before

Since this revision the sync stores of a resource whose patient is not linked
to a roster subject only its name (``{"id": …, "resourceType": …}``) and its
bookkeeping (``adapter.sync.resources._kept_raw``).  States written before kept the
minimised body of such resources too; this strips them, so an upgraded state
holds no more of a non-enrolled patient than a new one.  The stored versions
stay, so an unchanged resource is still skipped; should the patient join the
roster, the sync has the source send it again
(``adapter.sync.patients._requeue_unkept``).
Resources that name no patient keep their body, as in the sync.

Stripped bodies cannot be restored: the downgrade changes nothing.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BATCH = 1000

_sources = sa.table(
    "source_resources",
    sa.column("site", sa.String),
    sa.column("resource_type", sa.String),
    sa.column("resource_id", sa.String),
    sa.column("patient_ref", sa.String),
    sa.column("raw", sa.Text),
)
_links = sa.table(
    "patient_links",
    sa.column("site", sa.String),
    sa.column("patient_ref", sa.String),
    sa.column("subject_id", sa.String),
)


def upgrade() -> None:
    bind = op.get_bind()
    linked = (
        sa.select(_links.c.patient_ref)
        .where(
            _links.c.site == _sources.c.site,
            _links.c.patient_ref == _sources.c.patient_ref,
            _links.c.subject_id.is_not(None),
        )
        .exists()
    )
    keys = bind.execute(
        sa.select(_sources.c.site, _sources.c.resource_type, _sources.c.resource_id).where(
            _sources.c.patient_ref.is_not(None), _sources.c.patient_ref != "", ~linked
        )
    ).all()
    strip = (
        sa.update(_sources)
        .where(
            _sources.c.site == sa.bindparam("k_site"),
            _sources.c.resource_type == sa.bindparam("k_type"),
            _sources.c.resource_id == sa.bindparam("k_id"),
        )
        .values(raw=sa.bindparam("k_raw"))
    )
    for start in range(0, len(keys), BATCH):
        bind.execute(
            strip,
            [
                {
                    "k_site": site,
                    "k_type": resource_type,
                    "k_id": resource_id,
                    "k_raw": orjson.dumps(
                        {"resourceType": resource_type, "id": resource_id}, option=orjson.OPT_SORT_KEYS
                    ).decode(),
                }
                for site, resource_type, resource_id in keys[start : start + BATCH]
            ],
        )


def downgrade() -> None:
    pass
