"""Resumable training checkpoints (``checkpoint.pt``) and the RNG snapshot they carry.

A checkpoint holds, as nanoGPT's: model, optimizer and scheduler state, the epoch and global step, the
configs, labels and norm stats, the metrics so far, the best model so far, and the RNG states of torch
(CPU and CUDA), numpy and ``random``. Every value is a tensor or a plain Python type, so the file is read with
``torch.load(weights_only=True)`` like the weights file. Writes are atomic (temp file + ``os.replace``): a
crash mid-write leaves the previous checkpoint intact, and a ``.checkpoint.pt.*.tmp`` file that the next run
removes (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import glob
import logging
import os
import random
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "ast-sampleid-checkpoint/1"


class CheckpointError(ValueError):
    """The checkpoint is missing, unreadable or not ours."""


def capture_rng() -> dict[str, Any]:
    """Snapshot of every RNG the loop draws from, as tensors and plain types."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "random": _to_plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state((np_state["name"], keys, np_state["pos"], np_state["has_gauss"], np_state["gauss"]))
    version, internal, gauss_next = state["random"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(value: Any) -> Any:
    """Tuples -> lists recursively (``weights_only`` accepts both; lists round-trip more predictably)."""
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file in the same folder, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: Path, names: Iterable[str] = (CHECKPOINT_NAME,)) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files that a process killed mid-write left beside each of ``names``.

    :func:`atomic_torch_save` and ``models.save_weights`` name their temp files so. Call it before the run
    writes anything: it would also remove the temp file of a write in progress. Returns the removed paths.
    """
    removed: list[Path] = []
    for name in names:
        for tmp in sorted(Path(folder).glob(f".{glob.escape(name)}.*.tmp")):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    if removed:
        logger.info("removed %d temp file(s) left by an interrupted write: %s", len(removed),
                    ", ".join(p.name for p in removed))
    return removed


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (see :class:`training.train.Trainer.state`) atomically, tagged with the format."""
    atomic_torch_save({"format": CHECKPOINT_FORMAT, **state}, path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: missing, truncated, tampered or foreign file (one-line message).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from at {path} (run without --resume first)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # any unpickling failure means a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an ast-sampleid checkpoint (format {CHECKPOINT_FORMAT!r})")
    return state
