"""Child process of the kill tests: a tiny training run, optionally stalled half-way through a checkpoint write.

    python -m tests.training.kill_child MANIFEST OUT EPOCHS [--tear-write N --marker PATH]

With ``--tear-write N`` the N-th checkpoint write goes through the real ``atomic_torch_save`` but its
``torch.save`` writes only the first half of the bytes, flushes and fsyncs them, creates ``--marker`` and
sleeps: the parent then SIGKILLs the process mid-write.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from tests.training.train_helpers import tiny_request
from training import checkpoint
from training.train import run

STALL_S = 600.0  # far longer than any test waits: the parent kills the child first


class _TornTorch:
    """``torch`` as ``training.checkpoint`` sees it, except that the ``n``-th ``save`` is torn and stalls."""

    def __init__(self, real: ModuleType, n: int, marker: Path) -> None:
        self._real, self._n, self._marker, self._calls = real, n, marker, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def save(self, obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        self._calls += 1
        if self._calls < self._n:
            self._real.save(obj, f, *args, **kwargs)
            return
        buf = io.BytesIO()
        self._real.save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        self._marker.write_text(f"{len(data) // 2} of {len(data)} bytes\n")
        time.sleep(STALL_S)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kill_child")
    parser.add_argument("manifest", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("epochs", type=int)
    parser.add_argument("--tear-write", type=int, default=0, help="checkpoint write to tear (1-based)")
    parser.add_argument("--marker", type=Path, help="created once the torn bytes are on disk")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.tear_write:
        checkpoint.torch = _TornTorch(torch, args.tear_write, args.marker)  # type: ignore[assignment]
    run(tiny_request(args.manifest, args.out, epochs=args.epochs))


if __name__ == "__main__":
    main()
