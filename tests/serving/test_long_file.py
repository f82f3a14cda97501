"""A 2-hour WAV through `ast-serve identify`: peak RSS must stay <= 1 GB (block decoding, bounded windows).

Slow (writes ~230 MB and scores ~14,400 windows), so deselected by `make test`; run with `-m slow`.
Set AST_SAMPLEID_MODEL to measure with a real export instead of the fake model.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

HOURS = 2.0
RATE = 16000
BLOCK_S = 60
NOISE_AMPLITUDE = 0.01
RSS_LIMIT_BYTES = 1 << 30
KIB = 1024
ROOT = Path(__file__).resolve().parents[2]


def _write_long_wav(path: Path) -> float:
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=RATE, channels=1, subtype="PCM_16") as out:
        for _ in range(int(HOURS * 3600 / BLOCK_S)):
            out.write((rng.standard_normal(RATE * BLOCK_S) * NOISE_AMPLITUDE).astype(np.float32))
    return HOURS * 3600


def _peak_rss(cmd: list[str]) -> tuple[int, subprocess.CompletedProcess]:
    """Peak RSS of the child in bytes: /usr/bin/time -v when present, else getrusage(RUSAGE_CHILDREN)."""
    timer = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    if timer:
        proc = subprocess.run([timer, "-v", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=1800)
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        assert match, proc.stderr[-2000:]
        return int(match.group(1)) * KIB, proc
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * KIB, proc


@pytest.mark.slow
def test_two_hour_file_peak_rss_under_1gb(fake_model: Path, tmp_path: Path) -> None:
    song = tmp_path / "two hours.wav"
    seconds = _write_long_wav(song)
    model = os.environ.get("AST_SAMPLEID_MODEL") or str(fake_model)
    cmd = [sys.executable, "-c", "from serving.cli import main; main()", "identify", "--model", model,
           "--format", "json", "--timeline", str(song)]
    rss, proc = _peak_rss(cmd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(proc.stdout)[0]
    assert row["error"] is None and row["duration_s"] == pytest.approx(seconds, abs=1e-3)
    print(f"2-hour WAV ({song.stat().st_size / 1e6:.0f} MB): peak RSS {rss / 2**20:.0f} MiB, model {model}")
    assert rss <= RSS_LIMIT_BYTES
