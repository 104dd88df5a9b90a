"""Pages produced one ahead: same order, errors where they happened, no runaway producer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from adapter.fhir import prefetch


def test_order_is_kept_and_the_producer_runs_on_another_thread() -> None:
    threads: list[str] = []

    def numbers() -> Iterator[int]:
        for n in range(5):
            threads.append(threading.current_thread().name)
            yield n

    assert list(prefetch.ahead(numbers(), "test-prefetch")) == [0, 1, 2, 3, 4]
    assert set(threads) == {"test-prefetch"}


def test_an_error_arrives_after_the_pages_before_it() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("page 3 is broken")

    received = []
    with pytest.raises(ValueError, match="page 3"):
        for item in prefetch.ahead(failing()):
            received.append(item)
    assert received == [1, 2]


def test_the_producer_stays_at_most_two_pages_ahead_and_stops_when_the_consumer_does() -> None:
    produced: list[int] = []

    def endless() -> Iterator[int]:
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    pages = prefetch.ahead(endless())
    assert next(pages) == 0
    time.sleep(0.3)
    assert len(produced) <= 3  # the one handed over, one in the queue, one waiting to be put
    pages.close()  # e.g. SIGTERM between pages
    time.sleep(0.3)
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count
