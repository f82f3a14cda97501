"""Checkpoints: RNG round trip, atomic safe files, resume == uninterrupted run, and the config on resume."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from models import load_weights
from serving.contract import remove_stale_temps
from tests.training.train_helpers import tiny_config, tiny_request, write_manifest
from training.checkpoint import (
    CHECKPOINT_NAME,
    Checkpoint,
    CheckpointError,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from training.cli import main
from training.config import TrainConfig, peak_lr
from training.loop import Trainer, cosine_lambda
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
    save_checkpoint(path, Checkpoint(TrainConfig(), epoch=3, rng=capture_rng(), model={"w": torch.ones(2)}))
    state = load_checkpoint(path)
    assert state.epoch == 3 and torch.equal(state.model["w"], torch.ones(2))
    assert not list(tmp_path.glob(".*.tmp"))
    restore_rng(state.rng)
    assert torch.load(path, weights_only=True)["format"] == "ast-sampleid-checkpoint/1"


def test_checkpoint_dict_round_trip() -> None:
    ckpt = Checkpoint(tiny_config(ema_decay=0.5), epoch=2, step=7, history=[{"epoch": 1}], best_epoch=1,
                      best_key=(0.5, 1.0), labels=["a", "b"], norm=(-4.0, 3.0), init_from="w.pth")
    assert Checkpoint.from_dict(ckpt.to_dict()) == ckpt
    with pytest.raises(CheckpointError, match="lacks epoch"):
        Checkpoint.from_dict({"format": "ast-sampleid-checkpoint/1", "config": {}})


def test_remove_stale_temps_takes_only_its_own_temp_files(tmp_path: Path) -> None:
    stale = [tmp_path / ".checkpoint.pt.x1y2z3.tmp", tmp_path / ".modelo_audio.pth.4242.tmp"]
    kept = [tmp_path / "checkpoint.pt", tmp_path / ".other.pt.1.tmp", tmp_path / ".checkpoint.pt.bak",
            tmp_path / "checkpoint.pt.1.tmp"]
    for path in stale + kept:
        path.write_bytes(b"x")
    removed = remove_stale_temps(tmp_path, ("checkpoint.pt", "modelo_audio.pth"))
    assert sorted(removed) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert remove_stale_temps(tmp_path / "missing", (CHECKPOINT_NAME,)) == []


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


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_matches_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ema_decay: float) -> None:
    manifest, split = _interrupted_run(tmp_path, monkeypatch, ema_decay=ema_decay)
    assert not (split / "modelo_audio.pth").exists()
    full = run(tiny_request(manifest, tmp_path / "full", ema_decay=ema_decay))

    req = tiny_request(manifest, split, ema_decay=ema_decay)
    req.resume = True
    resumed = run(req)

    for key in ("test_top1", "test_top5", "best_epoch"):
        assert resumed[key] == full[key], key
    for a, b in zip(full["epochs"], resumed["epochs"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert (a["val_top1"], a["val_top5"]) == (b["val_top1"], b["val_top5"])
    sd_full = load_weights(tmp_path / "full" / "modelo_audio.pth").state_dict
    sd_resumed = load_weights(split / "modelo_audio.pth").state_dict
    assert sd_full.keys() == sd_resumed.keys()
    for key in sd_full:
        torch.testing.assert_close(sd_resumed[key], sd_full[key], rtol=1e-5, atol=1e-6, msg=key)
    assert json.loads((split / "metrics.json").read_text())["epochs"][1]["epoch"] == 2


def _interrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: object) -> tuple[Path, Path]:
    """A tiny run (epochs=2 unless overridden) killed during its second epoch: checkpoint after epoch 1."""
    manifest, out = write_manifest(tmp_path / "data"), tmp_path / "run"
    original = Trainer.run_epoch

    def crash_in_second_epoch(self: Trainer, epoch: int, val: object) -> dict:
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, val)

    monkeypatch.setattr(Trainer, "run_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_request(manifest, out, **overrides))
    monkeypatch.setattr(Trainer, "run_epoch", original)
    assert load_checkpoint(out / "checkpoint.pt").epoch == 1
    return manifest, out


def test_cli_resume_takes_the_checkpoints_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, out = _interrupted_run(tmp_path, monkeypatch)
    args = ["--manifest", str(manifest), "--out", str(out), "--resume"]
    result = CliRunner().invoke(main, args)  # no --epochs: the checkpoint's 2, not the tiny preset's 24
    assert result.exit_code == 0, result.output
    assert [row["epoch"] for row in json.loads((out / "metrics.json").read_text())["epochs"]] == [1, 2]
    assert load_checkpoint(out / "checkpoint.pt").config == tiny_config()

    lrs: list[tuple[int, float]] = []
    original = Trainer.run_epoch

    def record_lr(self: Trainer, epoch: int, val: object) -> dict:
        lrs.append((self.state.step, self.optimizer.param_groups[0]["lr"]))
        return original(self, epoch, val)

    monkeypatch.setattr(Trainer, "run_epoch", record_lr)
    result = CliRunner().invoke(main, [*args, "--epochs", "3"])  # extending: the schedule spans 3 epochs
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt.epoch == 3 and ckpt.config.epochs == 3
    cfg = tiny_config(epochs=3)
    step_per_epoch = ckpt.step // 3
    total = 3 * step_per_epoch
    schedule = cosine_lambda(total, max(1, round(cfg.warmup_frac * total)), cfg.min_lr_ratio)
    assert lrs == [(2 * step_per_epoch, pytest.approx(peak_lr(cfg, "classify") * schedule(2 * step_per_epoch)))]


@pytest.mark.parametrize(("option", "value", "needle"), [("--batch-size", "4", "batch_size"),
                                                          ("--preset", "small", "preset"),
                                                          ("--seed", "1", "seed")])
def test_cli_resume_refuses_mid_run_changes(tmp_path: Path, option: str, value: str, needle: str) -> None:
    manifest, out = write_manifest(tmp_path / "data"), tmp_path / "run"
    out.mkdir()
    save_checkpoint(out / "checkpoint.pt", Checkpoint(tiny_config(), epoch=1))
    result = CliRunner().invoke(main, ["--manifest", str(manifest), "--out", str(out), "--resume", option, value])
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("ast-train: error:")]
    assert len(errors) == 1 and f"cannot change {needle}" in errors[0], result.stderr


def test_cli_resume_refuses_a_changed_augment(tmp_path: Path) -> None:
    manifest, out = write_manifest(tmp_path / "data"), tmp_path / "run"
    out.mkdir()
    save_checkpoint(out / "checkpoint.pt", Checkpoint(tiny_config(), epoch=1))
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text(json.dumps({"augment": {"record_prob": 0.9}}))
    result = CliRunner().invoke(main, ["--manifest", str(manifest), "--out", str(out), "--resume",
                                       "--config-file", str(cfg_file)])
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("ast-train: error:")]
    assert len(errors) == 1 and "cannot change augment" in errors[0], result.stderr


def test_cli_resume_refuses_fewer_epochs_than_done(tmp_path: Path) -> None:
    manifest, out = write_manifest(tmp_path / "data"), tmp_path / "run"
    out.mkdir()
    save_checkpoint(out / "checkpoint.pt", Checkpoint(tiny_config(epochs=4), epoch=3))
    result = CliRunner().invoke(main, ["--manifest", str(manifest), "--out", str(out), "--resume", "--epochs", "2"])
    assert result.exit_code == 2 and "fewer than the 3 epochs" in result.stderr, result.output
