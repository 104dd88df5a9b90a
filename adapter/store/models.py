"""The adapter's state, as SQLAlchemy 2 tables.

The store is what makes a sync resumable and idempotent: it remembers which
source resource versions were already mapped, the facts and issues they
yielded, the current protocol records (with a content hash, so an unchanged
record is never re-sent) and the outbox of deliveries still owed to the trial
repository.  Raw source resources stay here, on the site, so a mapping fix can
re-map them without re-fetching; nothing in this database leaves the site.

Schema changes go through alembic migrations (``adapter/store/migrations``),
never ``create_all``, so a site upgrading in place keeps its state.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A moment stored in UTC and always read back timezone-aware.

    SQLite has no time zone type: it keeps the wall-clock digits and hands back
    a naive datetime.  Every moment the adapter writes is converted to UTC
    first, so a naive value read back is UTC, and this one type says so for
    every column instead of each reader repairing it.  PostgreSQL's
    ``timestamptz`` already does both; the conversions are then no-ops.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is not None:
            return value.astimezone(dt.UTC)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict: JSON,
        list: JSON,
    }


class SourceResource(Base):
    """One source resource, at the version last mapped."""

    __tablename__ = "source_resources"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(80))
    patient_ref: Mapped[str | None] = mapped_column(String(200))
    raw: Mapped[str] = mapped_column(Text)
    catalog_version: Mapped[str] = mapped_column(String(32))
    # mapped | issue | ignored | outside | deleted, or what the site recorded
    # instead of an event: not-given | not-done | withdrawn (adapter.mapping.not_counted)
    outcome: Mapped[str] = mapped_column(String(16))
    # Of an ``outside`` resource: the standard code that placed it outside the
    # protocol ("system|code") and that code's display, for coverage.
    code: Mapped[str | None] = mapped_column(String(300), default=None)
    code_display: Mapped[str | None] = mapped_column(String(200), default=None)
    last_seen_run: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PatientLink(Base):
    """Site patient resource -> trial subject id (None: not on the roster).

    Only the resource reference is kept, never the MRN or the name: the
    roster file is the one place identities meet (docs/design.md §5).
    """

    __tablename__ = "patient_links"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_ref: Mapped[str] = mapped_column(String(200), primary_key=True)
    subject_id: Mapped[str | None] = mapped_column(String(64))


class FactRow(Base):
    __tablename__ = "facts"
    __table_args__ = (
        Index("ix_facts_subject", "site", "subject_id"),
        Index("ix_facts_source", "site", "source_ref"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str] = mapped_column(String(64))
    source_ref: Mapped[str] = mapped_column(String(200))
    concept: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)


class IssueRow(Base):
    """A typed mapping issue with its lifecycle (open / resolved / ignored)."""

    __tablename__ = "issues"
    __table_args__ = (Index("ix_issues_site_status", "site", "status"),)

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(40))
    scope: Mapped[str] = mapped_column(String(300))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    concept: Mapped[str | None] = mapped_column(String(64))
    code: Mapped[str | None] = mapped_column(String(300))
    unit: Mapped[str | None] = mapped_column(String(64))
    value: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")
    reason: Mapped[str | None] = mapped_column(Text)
    first_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column()


class IssueSource(Base):
    """Which source (resource or derivation) currently raises which issue.

    An issue whose last source stops raising it resolves itself: that is how a
    mapping fix closes the issues it fixes (docs/design.md §3).
    """

    __tablename__ = "issue_sources"
    # Every re-mapped resource and derived subject replaces its issues by
    # (site, source); without this index each replacement scanned the table.
    __table_args__ = (Index("ix_issue_sources_source", "site", "source"),)

    issue_key: Mapped[str] = mapped_column(String(400), primary_key=True)
    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(200), primary_key=True)


class RecordRow(Base):
    """The current protocol record as last derived, with its content hash."""

    __tablename__ = "records"
    __table_args__ = (Index("ix_records_subject", "site", "subject_id"),)

    record_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str] = mapped_column(String(64))
    record_type: Mapped[str] = mapped_column(String(40))
    content_hash: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    retracted: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OutboxItem(Base):
    """A delivery owed to the trial repository; never deleted, only marked delivered."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "delivered_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[str] = mapped_column(String(64))
    record_type: Mapped[str] = mapped_column(String(40))
    operation: Mapped[str] = mapped_column(String(16))  # upsert | retract
    payload: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[dt.datetime | None] = mapped_column()
    # The fingerprint of the repository that acknowledged the item
    # (``DeliveryRepository``); None while pending, and for items delivered
    # before revision 0006 until the first run claims them (adapter.delivery.redelivery).
    delivered_to: Mapped[str | None] = mapped_column(String(64))


class SyncRun(Base):
    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    counts: Mapped[dict] = mapped_column(default=dict)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str] = mapped_column(String(400))
    detail: Mapped[dict] = mapped_column(default=dict)


class SyncCursor(Base):
    """Per (site, resource type): the incremental watermark and the resume point.

    ``watermark`` advances only after every page of a pass is committed;
    ``resume`` is the cursor of the last committed page of an unfinished pass.
    """

    __tablename__ = "sync_cursors"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    watermark: Mapped[dt.datetime | None] = mapped_column()
    resume: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(Base):
    """A reconciliation-console user; passwords are stored only as hashes."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))  # viewer | data_manager | admin
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SessionRow(Base):
    """One console login, named by the signed session cookie (``adapter.web.sessions``).

    The cookie alone cannot be taken back once issued; this row can.  Every
    request looks it up, so logging out, a password change or disabling the
    user (``revoked_at``), and ``[console] idle_minutes`` without a request
    (``last_seen_at``), end the session in every process at once.  ``id`` is
    the SHA-256 of the cookie's random nonce, so reading this table does not
    yield a usable cookie.
    """

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_user", "user_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_why: Mapped[str | None] = mapped_column(String(20))  # logout | password | disabled


class SiteLock(Base):
    """Who is syncing a site right now, so two processes never sync it at once."""

    __tablename__ = "site_locks"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DirtySubject(Base):
    """A subject whose facts changed since its records were last derived.

    Marked in the same transaction that changes the facts and cleared in the
    one that stores the re-derived records, so a crash between the two never
    leaves a subject's records stale: the next pass derives it again.
    """

    __tablename__ = "dirty_subjects"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class RetractionApproval(Base):
    """A person's explicit yes to retiring resources the retraction guard held back.

    The guard (``adapter.sync.retraction_guard``) refuses a pass that would retire
    all, or an unusual share, of a site's stored resources of one type: an
    emptied export file looks exactly like a mass deletion.  An approval
    covers at most ``max_count`` resources of that type and is used up by the
    next pass that lists the type completely, whatever that pass finds, so a
    stale yes can never wave through a later, larger loss.
    """

    __tablename__ = "retraction_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64))
    max_count: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    approved_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    consumed_at: Mapped[dt.datetime | None] = mapped_column()
    consumed_run: Mapped[int | None] = mapped_column(Integer)


class DeliveryRepository(Base):
    """A trial repository this state has delivered to, known by a fingerprint of where it is.

    The fingerprint hashes the repository's kind and its normalized URL or
    resolved folder (``adapter.sinks.identity``), never a credential: a new
    token for the same repository is the same repository.  ``location`` is
    that URL or folder, kept to name the repository in messages.  Which
    repository got each outbox item (``OutboxItem.delivered_to``) is what
    lets ``push --resend`` queue for a new repository exactly what it lacks.
    """

    __tablename__ = "delivery_repositories"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    location: Mapped[str] = mapped_column(Text)
    first_used_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
