"""Checkpoints: RNG round trip, atomic safe files, and resume == uninterrupted run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from models import load_weights
from tests.training.train_helpers import tiny_request, write_manifest
from training.checkpoint import (
    CheckpointError,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from training.loop import Trainer
from training.train import run


def _draws() -> tuple[float, float, float]:
    return float(torch.rand(1)), float(np.random.rand()), random.random()


def test_rng_round_trip() -> None:
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    np.random.randn()  # leave a cached gaussian in numpy's state
    state = capture_rng()
    first = _draws()
    restore_rng(state)
    assert _draws() == first


def test_checkpoint_round_trip_is_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 3, "rng": capture_rng(), "model": {"w": torch.ones(2)}})
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and torch.equal(state["model"]["w"], torch.ones(2))
    assert not list(tmp_path.glob(".*.tmp"))
    restore_rng(state["rng"])


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", None])
def test_bad_checkpoints_raise_one_line(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "checkpoint.pt"
    if content is None:
        torch.save({"format": "something-else"}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="--resume"):
        load_checkpoint(tmp_path / "checkpoint.pt")


def test_resume_matches_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = write_manifest(tmp_path / "data")
    full = run(tiny_request(manifest, tmp_path / "full"))

    original = Trainer.run_epoch

    def crash_in_second_epoch(self: Trainer, epoch: int, val: object) -> dict:
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, val)

    monkeypatch.setattr(Trainer, "run_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_request(manifest, tmp_path / "split"))
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["epoch"] == 1
    assert not (tmp_path / "split" / "modelo_audio.pth").exists()
    monkeypatch.setattr(Trainer, "run_epoch", original)

    req = tiny_request(manifest, tmp_path / "split")
    req.resume = True
    resumed = run(req)

    for key in ("test_top1", "test_top5", "best_epoch"):
        assert resumed[key] == full[key], key
    for a, b in zip(full["epochs"], resumed["epochs"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert (a["val_top1"], a["val_top5"]) == (b["val_top1"], b["val_top5"])
    sd_full = load_weights(tmp_path / "full" / "modelo_audio.pth").state_dict
    sd_resumed = load_weights(tmp_path / "split" / "modelo_audio.pth").state_dict
    assert sd_full.keys() == sd_resumed.keys()
    for key in sd_full:
        torch.testing.assert_close(sd_resumed[key], sd_full[key], rtol=1e-5, atol=1e-6, msg=key)
    assert json.loads((tmp_path / "split" / "metrics.json").read_text())["epochs"][1]["epoch"] == 2
