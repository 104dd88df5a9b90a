"""One sync pass for one site: read → parse → map → derive → store → outbox.

Data moves forward only (docs/design.md §1).  The pass is idempotent and
resumable: a source resource whose (id, version) was already mapped with the
current catalog is skipped, work is committed in pages, and a crash at any
point leaves a state from which the next pass continues without losing or
duplicating anything (records are compared by content hash before anything
is enqueued).  A catalog change re-maps the stored resources it affects, so a
mapping fix flows into the records without re-fetching.

The modules, in the order a pass runs them:

* ``setup``: what a site's pass loads from files (``SiteSetup``);
* ``passes``: the entry points ``sync_site`` and ``remap_site``;
* ``patients``: linking the site's Patients to the roster;
* ``remap``: mapping stored resources again after a catalog or link change;
* ``ingest``: reading each mapped type from the source, page by page;
* ``batches``: the source's pages joined into the unit of commit;
* ``resources``: one resource validated, mapped and stored minimised;
* ``derive``: the protocol records of the subjects a pass touched, after
  ``site_practice`` audits a changed site practice and marks the site's subjects;
* ``runs``: the pass's summary and run row; ``collector``: the GC around a pass.
"""

from adapter.sync.passes import MAPPED_TYPES, remap_site, sync_site
from adapter.sync.resources import NOT_KEPT, TOO_LARGE
from adapter.sync.runs import Progress, StopCheck, SyncStopped, SyncSummary
from adapter.sync.setup import SiteSetup

__all__ = [
    "MAPPED_TYPES",
    "NOT_KEPT",
    "TOO_LARGE",
    "Progress",
    "SiteSetup",
    "StopCheck",
    "SyncStopped",
    "SyncSummary",
    "remap_site",
    "sync_site",
]
