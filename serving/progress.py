"""When to draw a progress bar, one rule for every CLI (tqdm's convention).

A bar is drawn only when stderr is a terminal and the command's INFO logs are shown: ``-q`` (which raises
the log level) and a redirected stderr (a file, a pipe, CI logs) both mean no bar, so a log file never fills
with ``\\r`` redraws.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = ["show_progress"]


def show_progress(logger: logging.Logger | str | None = None, stream: TextIO | None = None) -> bool:
    """True when a bar may be drawn on ``stream`` (stderr): it is a TTY and ``logger`` speaks at INFO.

    Args:
        logger: the caller's logger (or its name); ``-q`` raises its level above INFO.
        stream: where the bar goes; the current ``sys.stderr`` by default.
    """
    stream = sys.stderr if stream is None else stream
    log = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-like stream without isatty
        tty = False
    return tty and log.isEnabledFor(logging.INFO)
