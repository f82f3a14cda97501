"""Resumable training checkpoints (``checkpoint.pt``): the :class:`Checkpoint` record and the RNG snapshot.

A checkpoint holds, as nanoGPT's: model, optimizer and scheduler state, the epoch and global step, the
configs, labels and norm stats, the metrics so far, the best model so far, and the RNG states of torch
(CPU and CUDA), numpy and ``random``. Every value is a tensor or a plain Python type, so the file is read with
``torch.load(weights_only=True)`` like the weights file. Writes go through ``serving.contract.atomic_write``
(temp file + rename): a crash mid-write leaves the previous checkpoint intact, and a ``.checkpoint.pt.*.tmp``
file that the next run removes (``serving.contract.remove_stale_temps``).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serving.contract import atomic_write, one_line
from training.config import TrainConfig

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "ast-sampleid-checkpoint/1"
REQUIRED_KEYS = ("config", "epoch")


class CheckpointError(ValueError):
    """The checkpoint is missing, unreadable or not ours."""


@dataclass
class Checkpoint:
    """Everything ``--resume`` needs; :meth:`to_dict` is the file's layout (tensors and plain types only)."""

    config: TrainConfig
    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps taken
    model: dict[str, torch.Tensor] = field(default_factory=dict)  # the AST's state_dict
    optimizer: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)  # capture_rng()
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.json "epochs" rows
    epoch_seconds: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_key: tuple[float, float] = (-1.0, -1.0)  # (val top-1, val top-5) of the best epoch
    best_state: dict[str, torch.Tensor] | None = None
    elapsed_s: float = 0.0
    ema: dict[str, Any] | None = None  # WeightEMA.state_dict() when ema_decay > 0
    model_config: dict[str, Any] = field(default_factory=dict)  # models.config.config_to_dict(ASTConfig)
    fbank_config: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    norm: tuple[float, float] = (0.0, 1.0)  # fbank (mean, std)
    init_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The dict that is saved (the layout of every earlier checkpoint, so they still load)."""
        return {"format": CHECKPOINT_FORMAT, "config": self.config.to_dict(), "epoch": self.epoch,
                "step": self.step, "model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "rng": self.rng, "history": self.history, "epoch_seconds": self.epoch_seconds,
                "best": {"epoch": self.best_epoch, "key": list(self.best_key), "state_dict": self.best_state},
                "elapsed_s": self.elapsed_s, "ema": self.ema, "model_config": self.model_config,
                "fbank_config": self.fbank_config, "labels": list(self.labels),
                "norm": {"mean": self.norm[0], "std": self.norm[1]}, "init_from": self.init_from}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        """Inverse of :meth:`to_dict`.

        Raises:
            CheckpointError: wrong format tag or a required key missing.
        """
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"not an ast-sampleid checkpoint (format {CHECKPOINT_FORMAT!r})")
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise CheckpointError(f"checkpoint lacks {', '.join(missing)}")
        best, norm = data.get("best") or {}, data.get("norm") or {}
        return cls(config=TrainConfig.from_dict(data["config"]), epoch=int(data["epoch"]),
                   step=int(data.get("step", 0)), model=data.get("model") or {},
                   optimizer=data.get("optimizer") or {}, scheduler=data.get("scheduler") or {},
                   rng=data.get("rng") or {}, history=list(data.get("history") or []),
                   epoch_seconds=list(data.get("epoch_seconds") or []), best_epoch=int(best.get("epoch", 0)),
                   best_key=tuple(best.get("key", (-1.0, -1.0))), best_state=best.get("state_dict"),
                   elapsed_s=float(data.get("elapsed_s", 0.0)), ema=data.get("ema"),
                   model_config=data.get("model_config") or {}, fbank_config=data.get("fbank_config") or {},
                   labels=list(data.get("labels") or []),
                   norm=(float(norm.get("mean", 0.0)), float(norm.get("std", 1.0))),
                   init_from=data.get("init_from"))


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


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` atomically (``torch.save`` of :meth:`Checkpoint.to_dict`)."""
    data = ckpt.to_dict()
    atomic_write(path, lambda handle: torch.save(data, handle))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: missing, truncated, tampered or foreign file (one-line message).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from at {path} (run without --resume first)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # any unpickling failure means a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {one_line(exc)}") from exc
    try:
        return Checkpoint.from_dict(data)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # right tag, broken fields
        raise CheckpointError(f"{path}: malformed checkpoint ({one_line(exc)})") from exc
