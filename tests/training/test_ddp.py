"""Two CPU ranks (gloo on localhost) through the real ``training.train.run``: disjoint data, identical weights,
files written by rank 0 only."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tests.training.train_helpers import tiny_request, write_manifest

WORLD_SIZE = 2
SPAWN_DEADLINE_S = 300.0  # the test takes ~15 s; a rank stuck in a collective must not hang CI


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, port: int, manifest: str, out: str, results: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank))
    from training import distributed, train

    seen: list[list[int]] = []  # this rank's window indices, one list per epoch
    shard, finish = distributed.shard_indices, train._finish

    def recording_shard(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - test shim
        indices = shard(*args, **kwargs)
        seen.append(list(indices))
        return indices

    def recording_finish(req, trainer, *rest):  # noqa: ANN001, ANN002, ANN202 - test shim: _finish's arguments
        metrics = finish(req, trainer, *rest)
        torch.save({"state": trainer.model.ast.state_dict(), "seen": seen, "metrics": metrics},
                   Path(results) / f"rank{rank}.pt")
        return metrics

    distributed.shard_indices, train._finish = recording_shard, recording_finish
    train.run(tiny_request(Path(manifest), Path(out), epoch_size=32))


def _spawn_with_deadline(fn: object, args: tuple, deadline_s: float = SPAWN_DEADLINE_S) -> None:
    """``mp.spawn`` that cannot hang the suite: ranks still alive after ``deadline_s`` are killed."""
    context = mp.start_processes(fn, args=args, nprocs=WORLD_SIZE, join=False, start_method="spawn")
    end = time.monotonic() + deadline_s
    while not context.join(timeout=max(0.1, end - time.monotonic())):
        if time.monotonic() >= end:
            for proc in context.processes:
                proc.kill()
            pytest.fail(f"DDP ranks still running after {deadline_s:.0f} s (killed)")


def test_two_cpu_ranks_shard_data_and_agree(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data")
    out, results = tmp_path / "out", tmp_path / "results"
    results.mkdir()
    _spawn_with_deadline(_worker, (_free_port(), str(manifest), str(out), str(results)))

    ranks = [torch.load(results / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]
    for epoch_seen in zip(ranks[0]["seen"], ranks[1]["seen"], strict=True):
        assert len(epoch_seen[0]) == len(epoch_seen[1]) == 16
        assert not set(epoch_seen[0]) & set(epoch_seen[1])  # disjoint shards (32 divides evenly)
    assert ranks[0]["seen"][0] != ranks[0]["seen"][1]  # reshuffled per epoch
    assert ranks[0]["metrics"]["test_top1"] == ranks[1]["metrics"]["test_top1"]
    assert ranks[0]["metrics"]["world_size"] == WORLD_SIZE
    state0, state1 = ranks[0]["state"], ranks[1]["state"]
    for key in state0:
        torch.testing.assert_close(state1[key], state0[key], rtol=0, atol=0, msg=key)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "curves.png", "metrics.json",
                                                     "modelo_audio.pth"]


@pytest.mark.slow
def test_torchrun_cli_two_ranks(tmp_path: Path) -> None:
    import subprocess
    import sys

    manifest = write_manifest(tmp_path / "data")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
           str(_free_port()), "-m", "training", "--manifest", str(manifest), "--out", str(tmp_path / "out"),
           "--epochs", "1", "--epoch-size", "16", "--batch-size", "4", "--threads", "1", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / "modelo_audio.pth").exists()
