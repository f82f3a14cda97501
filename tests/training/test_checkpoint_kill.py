"""Real crashes: a training child process SIGKILLed at a random point, or mid-checkpoint-write, then resumed.

The child (``tests/training/kill_child.py``) runs the tiny model for :data:`EPOCHS` epochs; the resumed run
must end exactly where an uninterrupted run of the same request ends.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from models import load_weights
from tests.training.train_helpers import tiny_request, write_manifest
from training.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from training.cli import main
from training.train import WEIGHTS_NAME, run

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 10
WAIT_S = 120.0  # child start (torch import) + an epoch, on a busy 2-core machine
POLL_S = 0.002
KILL_SEEDS = (0, 1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path]:
    """The manifest, and the metrics and folder of an uninterrupted :data:`EPOCHS`-epoch run."""
    root = tmp_path_factory.mktemp("reference")
    manifest = write_manifest(root / "data")
    metrics = run(tiny_request(manifest, root / "full", epochs=EPOCHS))
    return manifest, metrics, root / "full"


def _spawn(manifest: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    """Start ``kill_child`` on a tiny :data:`EPOCHS`-epoch run; its output goes to ``OUT.log`` beside ``out``."""
    cmd = [sys.executable, "-m", "tests.training.kill_child", str(manifest), str(out), str(EPOCHS), *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with open(out.parent / f"{out.name}.log", "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def _child_log(out: Path) -> str:
    return (out.parent / f"{out.name}.log").read_text(errors="replace")[-3000:]


def _file_id(path: Path) -> tuple[int, int] | None:
    """Identity of the file now at ``path`` (``os.replace`` gives every rewrite a new inode)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _wait_for(ready: Any, child: subprocess.Popen[bytes], out: Path, what: str) -> float:
    """Poll ``ready()`` until true; returns the time it became true. Fails if the child exits first."""
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if child.poll() is not None:
            pytest.fail(f"child exited ({child.returncode}) before {what}:\n{_child_log(out)}")
        if time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"no {what} after {WAIT_S:.0f}s:\n{_child_log(out)}")
        time.sleep(POLL_S)
    return time.monotonic()


def _wait_for_new_checkpoint(child: subprocess.Popen[bytes], out: Path, old: tuple[int, int] | None,
                             what: str) -> tuple[tuple[int, int] | None, float]:
    path = out / CHECKPOINT_NAME
    at = _wait_for(lambda: _file_id(path) not in (None, old), child, out, what)
    return _file_id(path), at


def _sigkill(child: subprocess.Popen[bytes], out: Path) -> None:
    assert child.poll() is None, f"child finished before the kill:\n{_child_log(out)}"
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL


def _resume(manifest: Path, out: Path) -> dict[str, Any]:
    req = tiny_request(manifest, out, epochs=EPOCHS)
    req.resume = True
    return run(req)


def _assert_same_run(resumed: dict[str, Any], full: dict[str, Any], out: Path, full_out: Path) -> None:
    """As in test_checkpoint.py::test_resume_matches_uninterrupted_run."""
    for key in ("test_top1", "test_top5", "best_epoch"):
        assert resumed[key] == full[key], key
    for a, b in zip(full["epochs"], resumed["epochs"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert (a["val_top1"], a["val_top5"]) == (b["val_top1"], b["val_top5"])
    written = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in written["epochs"]] == list(range(1, EPOCHS + 1))
    sd_full = load_weights(full_out / WEIGHTS_NAME).state_dict
    sd_resumed = load_weights(out / WEIGHTS_NAME).state_dict
    assert sd_full.keys() == sd_resumed.keys()
    for key in sd_full:
        torch.testing.assert_close(sd_resumed[key], sd_full[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_sigkill_at_a_random_point_then_resume_finishes(reference: tuple[Path, dict[str, Any], Path],
                                                        tmp_path: Path, seed: int) -> None:
    """Kill between the end of epoch 2 and two epochs later (epoch length measured on the child itself).

    Six epochs and the final evaluation and writes are left as slack, so the kill lands mid-run even when this
    process is scheduled late on a busy machine; ``_sigkill`` checks that the child was still running.
    """
    manifest, full, full_out = reference
    out = tmp_path / "killed"
    child = _spawn(manifest, out)
    first, t1 = _wait_for_new_checkpoint(child, out, None, "checkpoint after epoch 1")
    _, t2 = _wait_for_new_checkpoint(child, out, first, "checkpoint after epoch 2")
    delay = random.Random(seed).uniform(0.0, 2.0) * (t2 - t1)
    time.sleep(delay)
    _sigkill(child, out)
    done = load_checkpoint(out / CHECKPOINT_NAME).epoch
    logger.info("killed %.3fs after epoch 2 (epoch %.3fs); checkpoint has %d epochs", delay, t2 - t1, done)
    assert 2 <= done < EPOCHS and not (out / WEIGHTS_NAME).exists()

    _assert_same_run(_resume(manifest, out), full, out, full_out)


def test_sigkill_mid_checkpoint_write_leaves_the_last_checkpoint(reference: tuple[Path, dict[str, Any], Path],
                                                                 tmp_path: Path) -> None:
    """The second checkpoint write is half on disk when the kill lands; ``ast-train --resume`` then finishes."""
    manifest, full, full_out = reference
    out, marker = tmp_path / "torn", tmp_path / "torn.marker"
    child = _spawn(manifest, out, "--tear-write", "2", "--marker", str(marker))
    _wait_for(marker.exists, child, out, "torn second checkpoint write")
    _sigkill(child, out)

    assert load_checkpoint(out / CHECKPOINT_NAME).epoch == 1  # the first checkpoint, intact
    torn = list(out.glob(f".{CHECKPOINT_NAME}.*.tmp"))
    assert len(torn) == 1, torn  # the half-written second one, never renamed over checkpoint.pt
    with pytest.raises(CheckpointError):
        load_checkpoint(torn[0])

    result = CliRunner().invoke(main, ["--manifest", str(manifest), "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output  # the torn file does not stop --resume
    _assert_same_run(json.loads((out / "metrics.json").read_text()), full, out, full_out)
    assert not list(out.glob(".*.tmp"))  # and the resumed run removed it
