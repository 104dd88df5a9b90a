"""Keeps CPython's cyclic garbage collector off the heap that outlives a pass.

``sparing`` wraps a whole pass (``sync_site``, ``remap_site``); the class
says why and how.
"""

from __future__ import annotations

import functools
import gc
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")


class _Collector:
    """Keeps CPython's cyclic garbage collector off the objects that outlive a pass.

    A full collection walks every tracked object: the imported modules,
    SQLAlchemy's mappers, pydantic's schemas (~120,000 objects).  A pass
    allocates a few dozen short-lived containers per resource, so CPython
    runs a full collection every few thousand resources; in
    bench/map_bench.py's pipeline that was ~10 % of the sync's CPU time.
    ``gc.freeze`` sets what exists when the pass starts aside (the pass's own
    objects are still collected as usual; reference counting frees the rest);
    when the last concurrent pass ends, ``gc.unfreeze`` hands it back.

    What is garbage must not be frozen with the rest: handed back into the
    oldest generation, it waits for a full collection, which CPython never
    got to in a process running pass after pass (issue 13, item 8: ~130
    objects and ~100 KiB of RSS more per pass of a 10-patient site, without
    end; bench/soak_bench.py).  Most of it was the pass's own: SQLAlchemy
    statements, whose bind parameters hold a page's resource ids in cycles
    with their comparators.  So when the last pass ends, a full collection
    runs while the heap is still frozen (it walks only what the pass made:
    milliseconds), and each pass starts with a collection of the young
    generations.  Garbage that was alive when a pass started and died after
    it (a cycle a caller held across the pass) needs a full collection of
    the whole heap (~40 ms): one at the start of a pass, at most every
    ``FULL_EVERY`` seconds, bounds it.
    """

    FULL_EVERY = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._passes = 0
        self._full_at = -self.FULL_EVERY

    def sparing(self, func: Callable[_P, _R]) -> Callable[_P, _R]:
        """``func`` (a whole pass) run with the collector sparing what existed before it."""

        @functools.wraps(func)
        def during_pass(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with self._lock:
                self._passes += 1
                if time.monotonic() - self._full_at >= self.FULL_EVERY:
                    gc.collect()
                    self._full_at = time.monotonic()
                else:
                    gc.collect(1)
                gc.freeze()
            try:
                return func(*args, **kwargs)
            finally:
                with self._lock:
                    self._passes -= 1
                    if not self._passes:
                        gc.collect()  # only the pass's own objects: the rest is still frozen
                        gc.unfreeze()

        return during_pass


sparing = _Collector().sparing  # one collector for every pass in the process
