"""Command-line logging: records go to whatever ``sys.stderr`` is when they are emitted.

``logging.basicConfig(stream=sys.stderr)`` binds the stream object of the moment. When a CLI runs inside a
host that swaps ``sys.stderr`` (click's ``CliRunner``, a notebook, a test harness), the handler is left
holding a closed stream and the next record becomes a "--- Logging error ---" traceback. Resolving the
stream at emit time avoids that, whatever ran before.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["CurrentStderrHandler", "log_to_stderr"]


class CurrentStderrHandler(logging.StreamHandler):
    """A StreamHandler whose stream is always the current ``sys.stderr``."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:  # set by StreamHandler.__init__; ignored
        pass


def log_to_stderr(level: int, fmt: str) -> None:
    """Replace the root handlers with one stderr handler at ``level`` using ``fmt``."""
    logging.basicConfig(level=level, format=fmt, handlers=[CurrentStderrHandler()], force=True)
