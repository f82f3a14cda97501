"""Run a producer in a background thread, a few items ahead of its consumer.

Decoding (soundfile, soxr), inference (ONNX Runtime, OpenVINO) and FAISS release the GIL while they compute, so
a producer thread overlaps them with the consumer's work: the next files' batches while ``identify`` scores
the current one, or the next song's embedding and search while ``identify --index`` verifies this one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

PUT_POLL_S = 0.1
_END = object()


def prefetched(items: Iterator[T], ahead: int, name: str) -> Iterator[T]:
    """``items``, produced in a daemon thread called ``name`` at most ``ahead`` items before the consumer.

    An exception in the producer is re-raised in the consumer. If the consumer stops early (an exception, or the
    generator is closed), the producer is told to stop and drops out at its next put, so no thread or decoded
    audio outlives the run.
    """
    q: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=PUT_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as err:  # re-raised in the consumer thread
            put(err)

    threading.Thread(target=produce, name=name, daemon=True).start()
    try:
        while (item := q.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
