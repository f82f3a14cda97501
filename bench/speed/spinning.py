"""ORT thread spinning and OpenVINO pinning, quiet and with a competing busy process on one core (issue 14).

    .venv/bin/python -m bench.speed.spinning --model runs/tiny/model.onnx [--seconds 2] [--reps 3] [--batches 1,8]

ORT's intra-op threads busy-wait between ops by default (``session.intra_op.allow_spinning=1``); OpenVINO pins
its threads to cores under the latency hint. On a 2-core machine shared with other work both can hurt. Each
condition (``quiet``: nothing of ours competing; ``busy``: ``python -c "while True: pass"`` pinned to core 0
with ``taskset``) times every variant in turn, ``reps`` times interleaved, so drifts of the background load
hit all variants alike. Prints one JSON document (median ms/clip per variant, batch and condition, and the
load average at each condition's start); bench/NOTES.md #17 holds the figures.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from bench.speed.env import load_average
from bench.speed.synth import music_clips

log = logging.getLogger("bench.speed.spinning")

BUSY_CODE = "while True: pass"
BUSY_CORE = "0"
SETTLE_S = 1.0  # let the busy process reach its core before timing
Runner = Callable[[np.ndarray], object]


def _ort(path: Path, threads: int, spinning: bool) -> Runner:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"waveform": x})


def _openvino(path: Path, threads: int, pinning: bool, precision: str = "bf16") -> Runner:
    from serving.backends.openvino import OpenVinoBackend, OpenVinoConfig

    backend = OpenVinoBackend(str(path), OpenVinoConfig(threads=threads, pinning=pinning), precision)
    return backend.run


def variants(path: Path, threads: int) -> dict[str, Callable[[], Runner]]:
    """Name -> lazy runner builder."""
    return {
        "ort fp32 spinning on (ORT default)": lambda: _ort(path, threads, True),
        "ort fp32 spinning off": lambda: _ort(path, threads, False),
        "openvino bf16 pinning on (OV default)": lambda: _openvino(path, threads, True),
        "openvino bf16 pinning off": lambda: _openvino(path, threads, False),
    }


def _median_ms(run: Runner, x: np.ndarray, seconds: float) -> float:
    run(x)  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times) / len(x)


def _busy() -> subprocess.Popen:
    cmd = [sys.executable, "-c", BUSY_CODE]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", BUSY_CORE, *cmd]
    proc = subprocess.Popen(cmd)
    time.sleep(SETTLE_S)
    return proc


def measure(path: Path, threads: int, batches: list[int], seconds: float, reps: int) -> dict[str, Any]:
    """Median ms/clip per condition, variant and batch (the median over ``reps`` interleaved reps)."""
    runners = {name: build() for name, build in variants(path, threads).items()}
    from serving.session import ModelSession, SessionOptions

    window = ModelSession(path, SessionOptions(device="cpu")).metadata.window_samples
    clips = {b: music_clips(b, window, seed=b) for b in batches}
    out: dict[str, Any] = {"model": str(path), "threads": threads, "seconds": seconds, "reps": reps,
                           "cpus": os.cpu_count(), "conditions": {}}
    for condition in ("quiet", "busy"):
        proc = _busy() if condition == "busy" else None
        try:
            cond: dict[str, Any] = {"load_average_start": load_average(), "ms_per_clip": {}}
            samples: dict[str, list[float]] = {}
            for _ in range(reps):
                for name, run in runners.items():
                    for b in batches:
                        samples.setdefault(f"{name} b{b}", []).append(_median_ms(run, clips[b], seconds))
            cond["ms_per_clip"] = {k: round(statistics.median(v), 2) for k, v in samples.items()}
            cond["ms_per_clip_reps"] = {k: [round(x, 2) for x in v] for k, v in samples.items()}
            cond["load_average_end"] = load_average()
            out["conditions"][condition] = cond
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
        log.info("%s: %s", condition, out["conditions"][condition]["ms_per_clip"])
    return out


@click.command()
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--batches", default="1,8", show_default=True)
@click.option("--seconds", type=float, default=2.0, show_default=True, help="Timing per (variant, batch, rep).")
@click.option("--reps", type=int, default=3, show_default=True)
def main(model: Path, threads: int, batches: str, seconds: float, reps: int) -> None:
    """Spinning on/off (ORT) and pinning on/off (OpenVINO bf16), quiet and with one busy core."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    result = measure(model, threads, [int(b) for b in batches.split(",") if b], seconds, reps)
    click.echo(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
