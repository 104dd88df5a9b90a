"""Fetch the next page while the sync stores this one.

A pass alternates between waiting for the server (a search page) and working
locally (parse, map, derive, commit).  Without overlap the two add up; the
benchmark (``bench/sync_bench.py``) showed the server's share to be about
half of a full sync against a local server, more against a remote one.  So
pages are produced one ahead, on a worker thread, and handed over through a
queue of one: at most two pages are in memory, the order is unchanged, and an
error of the producer is raised in the consumer at the page where it
happened.

Commit semantics do not change: a page the sync has not committed is simply
read again by the next pass (its cursor was never stored).  When the consumer
stops early (SIGTERM between pages, an error while storing), the producer is
told to stop; a request it has in flight finishes in the background and is
discarded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_POLL = 0.1  # seconds between the producer's checks whether the consumer went away


class _Done:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def ahead(items: Iterator[T], name: str = "fhir-prefetch") -> Iterator[T]:
    """``items``, produced one ahead on a worker thread."""
    handover: queue.Queue[T | _Done] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def offer(item: T | _Done) -> bool:
        while not stop.is_set():
            try:
                handover.put(item, timeout=_POLL)
            except queue.Full:
                continue
            return True
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            offer(_Done(exc))
            return
        offer(_Done())

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = handover.get()
            if isinstance(item, _Done):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
