"""Small synthetic manifests and tiny training configs for the training-loop tests; a full-disk stand-in."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import soundfile as sf

from training.config import TrainConfig, make_config
from training.train import TrainRequest

SAMPLE_RATE = 16000
SONG_SECONDS = 1.5
LABEL_TONES_HZ = (300.0, 800.0, 1900.0)
TRAIN_SONGS, VAL_SONGS, TEST_SONGS = 3, 1, 1
# A one-block, 64-wide AST on 1-second windows: a training step takes milliseconds.
TINY_MODEL = {"depth": 1, "embed_dim": 64, "num_heads": 2, "target_frames": 100}


def write_manifest(root: Path, tones: tuple[float, ...] = LABEL_TONES_HZ, with_test: bool = True) -> Path:
    """Tone-per-label songs (with noise) and a manifest with train/val[/test] splits; returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["song,sample,split"]
    splits = ["train"] * TRAIN_SONGS + ["val"] * VAL_SONGS + (["test"] * TEST_SONGS if with_test else [])
    t = np.arange(int(SAMPLE_RATE * SONG_SECONDS)) / SAMPLE_RATE
    for li, f0 in enumerate(tones):
        for j, split in enumerate(splits):
            wave = 0.3 * np.sin(2 * np.pi * f0 * (1 + 0.01 * j) * t) + 0.05 * rng.standard_normal(len(t))
            name = f"song_{li}_{j}.wav"
            sf.write(root / name, wave.astype(np.float32), SAMPLE_RATE)
            rows.append(f"{name},label{li},{split}")
    path = root / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def tiny_config(**overrides: object) -> TrainConfig:
    """A few 8-window steps per epoch on the one-block model, one CPU thread."""
    values: dict[str, object] = {"model_overrides": dict(TINY_MODEL), "epochs": 2, "epoch_size": 16,
                                 "batch_size": 8, "norm_windows": 8, "threads": 1, "time_mask": 20,
                                 "freq_mask": 16, "eval_batch_size": 8, "device": "cpu"}
    values.update(overrides)
    return make_config("tiny", **values)


def tiny_request(manifest: Path, out_dir: Path, **overrides: object) -> TrainRequest:
    return TrainRequest(manifest=manifest, out_dir=out_dir, config=tiny_config(**overrides))


def fail_probe(monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    """Make the ``--out`` probe write (only it) fail with ``err``, as a full disk does."""
    original = Path.write_bytes

    def write_bytes(self: Path, data: Any) -> int:
        if self.name.startswith(".ast-train-probe-"):
            raise OSError(err, os.strerror(err), str(self))
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


def fake_free(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    """Make ``shutil.disk_usage`` report ``free`` bytes free on every filesystem."""
    total = max(free, 100 * 10**9)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(total, total - free, free))
