"""``ast-train`` command line: help, presets and config files, one-line usage errors (exit 2; a full ``--out``
too), a bug keeps its traceback (exit 1), and an end-to-end run."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.training.train_helpers import fail_probe, fake_free, write_manifest
from training import train
from training.cli import main
from training.loop import Trainer

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
EXIT_USAGE = 2
FAST = ["--epochs", "1", "--epoch-size", "16", "--batch-size", "8", "--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("data"))


def _assert_one_line_error(result: object) -> None:
    assert result.exit_code == EXIT_USAGE, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ast-train: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_contract_options() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for option in ("--manifest", "--out", "--preset", "--config", "--config-file", "--epochs", "--init-from",
                   "--resume", "--device", "--seed", "--batch-size", "--lr", "--epoch-size", "--workers",
                   "--threads"):
        assert option in result.output, option
    text = " ".join(result.output.split())  # unwrapped
    for default in ("[default: tiny: 24, small: 20, base: 10]", "[default: tiny: 32, small: 32, base: 16]",
                    "[default: tiny: 0.001 classify/0.0005 fingerprint, small: 0.0005, base: 5e-05]",
                    "[default: tiny: 1024, small: 4096, base: 4096]", "DataLoader worker processes. [default: 0]"):
        assert default in text, default


@pytest.fixture
def train_requests(monkeypatch: pytest.MonkeyPatch) -> list[train.TrainRequest]:
    """The requests the CLI hands to ``training.train.run`` (which then returns without training)."""
    seen: list[train.TrainRequest] = []

    def fake_run(req: train.TrainRequest) -> dict:
        seen.append(req)
        return {"rank": 1}  # not rank 0: nothing to print

    monkeypatch.setattr(train, "run", fake_run)
    return seen


def test_options_override_the_config_file_over_the_preset(tmp_path: Path,
                                                          train_requests: list[train.TrainRequest]) -> None:
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text('preset = "small"\nepochs = 3\nseed = 7\n[augment]\nrecord_prob = 0.2\n')
    args = ["--manifest", "m.csv", "--out", str(tmp_path / "o"), "--config-file", str(cfg_file), "--epochs", "5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (req,) = train_requests
    cfg = req.config
    assert (cfg.preset, cfg.epochs, cfg.seed, cfg.augment.record_prob) == ("small", 5, 7, 0.2)
    assert cfg.epoch_size == 4096  # the small preset's, not set anywhere else
    assert req.given == {"epochs", "seed", "augment", "preset"} and req.preset_given


def test_config_is_a_deprecated_alias_of_preset(tmp_path: Path, train_requests: list[train.TrainRequest]) -> None:
    result = CliRunner().invoke(main, ["--manifest", "m.csv", "--out", str(tmp_path), "--config", "small"])
    assert result.exit_code == 0, result.output
    assert train_requests[0].config.preset == "small" and train_requests[0].preset_given
    assert result.stderr.count("--config is deprecated; use --preset small") == 1
    clash = CliRunner().invoke(main, ["--manifest", "m.csv", "--out", str(tmp_path), "--config", "small",
                                      "--preset", "base"])
    assert clash.exit_code == EXIT_USAGE and "disagree" in clash.stderr


def test_unknown_config_file_key_is_a_usage_error(manifest: Path, tmp_path: Path, no_training: list[int]) -> None:
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text('{"batchsize": 4}')
    result = CliRunner().invoke(main, ["--manifest", str(manifest), "--out", str(tmp_path / "o"),
                                       "--config-file", str(cfg_file)])
    _assert_one_line_error(result)
    assert "unknown config key 'batchsize'; did you mean 'batch_size'?" in result.stderr


def test_cuda_without_cuda_is_a_usage_error(manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            no_training: list[int]) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(main, ["--manifest", str(manifest), "--out", str(tmp_path / "o"),
                                       "--device", "cuda"])
    _assert_one_line_error(result)
    assert "no CUDA device" in result.stderr


BUG_SCRIPT = """
import sys
from training.loop import Trainer

def boom(self, epoch):
    raise RuntimeError("injected bug deep in training")

Trainer.train_epoch = boom
from training.cli import main
sys.argv[0] = "ast-train"
main()
"""


def test_a_bug_prints_its_traceback_and_exits_1(manifest: Path, tmp_path: Path) -> None:
    """Only the typed errors are usage errors: anything else keeps its traceback (the real entry point)."""
    proc = subprocess.run([sys.executable, "-c", BUG_SCRIPT, "--manifest", str(manifest), "--out",
                           str(tmp_path / "o"), *FAST], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback (most recent call last)" in proc.stderr
    assert "RuntimeError: injected bug deep in training" in proc.stderr
    assert "ast-train: error:" not in proc.stderr


def test_missing_manifest_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--manifest", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")])
    _assert_one_line_error(result)


def test_bad_manifest_rows_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "manifest.csv"
    bad.write_text("song,sample,split\nmissing1.wav,a,train\nmissing2.wav,b,train\n")
    result = CliRunner().invoke(main, ["--manifest", str(bad), "--out", str(tmp_path / "o")])
    _assert_one_line_error(result)
    assert not (tmp_path / "o").exists()  # nothing created before the manifest passed


def test_unwritable_out_is_a_usage_error(manifest: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(main, ["--manifest", str(manifest), "--out", str(blocker / "out")])
    _assert_one_line_error(result)
    assert "not writable" in result.stderr


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Epochs that started (the test fails on the first one instead of training)."""
    started: list[int] = []

    def run_epoch(self: Trainer, epoch: int, val: object) -> dict:
        started.append(epoch)
        raise AssertionError("a training epoch started")

    monkeypatch.setattr(Trainer, "run_epoch", run_epoch)
    return started


def test_out_without_room_for_checkpoints_is_a_usage_error(manifest: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           no_training: list[int]) -> None:
    fake_free(monkeypatch, 3_100_000)  # the tiny preset's checkpoint is ~31 MB
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["--manifest", str(manifest), "--out", str(out), *FAST])
    _assert_one_line_error(result)
    assert "only 3.1 MB free, this run needs about" in result.stderr, result.stderr
    assert no_training == [] and not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT])
def test_full_out_is_a_usage_error(manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   no_training: list[int], err: int) -> None:
    fail_probe(monkeypatch, err)
    result = CliRunner().invoke(main, ["--manifest", str(manifest), "--out", str(tmp_path / "o"), *FAST])
    _assert_one_line_error(result)
    assert f"is full: {os.strerror(err)}" in result.stderr, result.stderr
    assert no_training == []


def test_disk_full_mid_run_is_one_line_and_resume_finishes(manifest: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while the second checkpoint is written: exit 1 with one line, the first checkpoint and
    no temp file are left, and ``--resume`` (with room again) finishes the run."""
    import torch

    from training import checkpoint

    real_save, calls = torch.save, []

    def save_until_full(obj: object, fh: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            fh.write(b"partial")  # some bytes reach the temp file before the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, fh)

    out = tmp_path / "run"
    args = ["--manifest", str(manifest), "--out", str(out), *FAST, "--epochs", "3"]
    monkeypatch.setattr(checkpoint.torch, "save", save_until_full)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("ast-train: error:")]
    assert len(errors) == 1 and os.strerror(errno.ENOSPC) in errors[0] and "--resume" in errors[0]
    assert "Traceback" not in result.stderr
    assert checkpoint.load_checkpoint(out / checkpoint.CHECKPOINT_NAME).epoch == 1
    assert sorted(p.name for p in out.iterdir()) == [checkpoint.CHECKPOINT_NAME]

    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    result = CliRunner().invoke(main, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 3


def test_resume_without_checkpoint_is_a_usage_error(manifest: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--manifest", str(manifest), "--out", str(tmp_path), "--resume"])
    _assert_one_line_error(result)


def test_bad_init_from_is_a_usage_error(manifest: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk")
    result = CliRunner().invoke(main, ["--manifest", str(manifest), "--out", str(tmp_path / "o"),
                                       "--init-from", str(junk), *FAST])
    _assert_one_line_error(result)


def test_init_from_hash_mismatch_is_a_usage_error(manifest: Path, tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"any bytes")
    result = CliRunner().invoke(main, ["--manifest", str(manifest), "--out", str(tmp_path / "o"),
                                       "--init-from", str(weights), "--init-sha256", "0" * 64, *FAST])
    _assert_one_line_error(result)
    assert "sha256 mismatch" in result.stderr


@pytest.mark.parametrize("extra", [["--init-sha256", "xyz"], ["--init-sha256", "0" * 64]])
def test_init_sha256_malformed_or_alone_is_a_usage_error(manifest: Path, tmp_path: Path, extra: list[str]) -> None:
    args = ["--manifest", str(manifest), "--out", str(tmp_path / "o"), *extra, *FAST]
    if extra[1] == "xyz":
        args += ["--init-from", str(manifest)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == EXIT_USAGE and "Traceback" not in result.output
    assert ("64 hex digits" if extra[1] == "xyz" else "needs --init-from") in result.stderr


def test_python_dash_m_training_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "training", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "--manifest" in proc.stdout


def test_ast_train_end_to_end(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    exe = VENV_BIN / "ast-train"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "training"]
    proc = subprocess.run([*cmd, "--manifest", str(manifest), "--out", str(out), "--preset", "tiny", *FAST],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("modelo_audio.pth", "metrics.json", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"epochs", "test_top1", "test_top5"} <= set(metrics)
    assert list(metrics["epochs"][0]) == ["epoch", "train_loss", "val_top1", "val_top5"]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["test_top1"] == metrics["test_top1"]
    assert "epoch 1/1" in proc.stderr  # per-epoch log line
