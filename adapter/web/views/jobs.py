"""A fix job's page: queued, running (with its progress) or done (with its result), or why it failed.

A console fix runs in the background (``adapter.web.jobs``); the browser
lands here and the page reloads itself every few seconds while the job is
queued or running.  The reload is a ``<meta http-equiv="refresh">``: the
console's Content-Security-Policy allows no scripts.  Anyone who may read
the audit log may read a job's page; it shows source references the way the
audit log does (masked for viewers).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from adapter.web import context, params, render
from adapter.web.auth import AnyUser

router = APIRouter()

REFRESH_SECONDS = 2


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: params.JobId, user: AnyUser) -> Response:
    console = context.of(request)
    job = console.jobs.get(job_id)
    if job is None:
        raise HTTPException(
            404,
            "No such fix job. Jobs are kept only while the console runs; the audit log has every fix made.",
        )
    result, tokens = job.result, console.tokens
    return render.page(
        request,
        "job.html",
        user,
        title="Fix job",
        nav="audit",
        job=job,
        refresh=REFRESH_SECONDS if job.active else None,
        issue_token=tokens.token(job.order.issue_key) if job.order.issue_key else None,
        resolved=[(key, tokens.token(key)) for key in (result.issues_resolved if result else ())],
        opened=[(key, tokens.token(key)) for key in (result.issues_opened if result else ())],
    )
