"""A site's server that answered another question: the issue, the metric, and when it clears.

``adapter.fhir.verify`` stops a search at the first result that does not fit
it (``errors.ServerFault``).  The pass fails with exit 9; this module makes
the fault visible where people look between runs: one open
``server_fault`` issue per site and resource type (the console's worklist,
``issues list``, the open-issue gauge) and the counter
``trial_adapter_server_faults_total{site, fault}``.  The issue resolves by
itself when a later pass reads that type to the end without a fault.
"""

from __future__ import annotations

import prometheus_client
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter import errors
from adapter.mapping.issues import IssueKind, MappingIssue
from adapter.store import models, state

SCOPE_PREFIX = "server:"

FAULTS = prometheus_client.Counter(
    "trial_adapter_server_faults",
    "Searches stopped because the site's server answered with results the search did not ask for, "
    "by site and fault (unasked_patient, unasked_code, unasked_category, unasked_id, wrong_type, "
    "last_updated_ignored, next_link_drops_params).",
    ["site", "fault"],
)


def record(session: Session, site: str, fault: errors.ServerFault) -> None:
    """Raise (or keep) the site's issue for the faulty resource type, and count the fault."""
    FAULTS.labels(site=site, fault=fault.fault).inc()
    adapts = (
        f" The source setting {fault.setting} adapts to it (trial-adapter check shows what the server does)."
        if fault.setting
        else " No setting adapts to it: ask the site's FHIR team (trial-adapter check shows what the server "
        "does)."
    )
    issue = MappingIssue(
        site=site,
        kind=IssueKind.SERVER_FAULT,
        scope=SCOPE_PREFIX + fault.resource_type,
        code=fault.fault,
        detail=f"{fault}.{adapts}"[:2000],
    )
    state.replace_issues(session, site, SCOPE_PREFIX + fault.resource_type, [issue])


def is_open(session: Session, site: str, resource_type: str) -> bool:
    """Whether the type has an open fault issue (one indexed lookup; most passes have none)."""
    query = sa.select(models.IssueRow.key).where(
        models.IssueRow.site == site,
        models.IssueRow.kind == IssueKind.SERVER_FAULT.value,
        models.IssueRow.scope == SCOPE_PREFIX + resource_type,
        models.IssueRow.status == "open",
    )
    return session.execute(query.limit(1)).first() is not None


def clear(session: Session, site: str, resource_type: str) -> None:
    """The type was read to the end without a fault: its issue resolves."""
    state.replace_issues(session, site, SCOPE_PREFIX + resource_type, [])
