"""Issue-4 bars on the demo model (slow; needs `make demo` first, else skipped).

- ``ast-serve identify`` top-1 over the demo test songs equals training's ``test_top1`` within one song;
- the predicted span overlaps the true ``start_s``-``end_s`` for >= 90 % of correctly identified songs;
- the model's calibrated default threshold answers "no match" for silence, noise and drums-only audio and keeps
  >= 95 % of the test songs that the forced guess gets right.
Prints the figures (run with ``-s``). ``AST_SAMPLEID_DEMO`` points at another folder holding ``data/demo`` and
``runs/demo`` (default: the checkout).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serving.identify import IdentifyOptions, identify
from serving.matches import MatchOptions
from serving.session import ModelSession, SessionOptions

ROOT = Path(os.environ.get("AST_SAMPLEID_DEMO") or Path(__file__).resolve().parents[2])
MODEL = ROOT / "runs" / "demo" / "modelo_audio.onnx"
METRICS = ROOT / "runs" / "demo" / "metrics.json"
MANIFEST = ROOT / "data" / "demo" / "manifest.csv"
SPAN_OVERLAP_MIN = 0.90
KEPT_MIN = 0.95  # share of the forced guess's correct test songs the default threshold keeps


def _test_rows() -> list[dict[str, str]]:
    with open(MANIFEST, newline="") as fh:
        return [row for row in csv.DictReader(fh) if row.get("split", "") == "test"]


def _find_top1(metrics: dict) -> float | None:
    for key in ("test_top1", "top1_test"):
        if key in metrics:
            return float(metrics[key])
    nested = metrics.get("test")
    return float(nested["top1"]) if isinstance(nested, dict) and "top1" in nested else None


@pytest.mark.slow
@pytest.mark.skipif(not (MODEL.exists() and MANIFEST.exists()), reason="run `make demo` first")
def test_demo_top1_and_span_overlap() -> None:
    rows = _test_rows()
    assert rows, "the demo manifest has no test split"
    session = ModelSession(MODEL, SessionOptions(device="auto"))
    paths = [str(MANIFEST.parent / row["song"]) for row in rows]
    results = list(identify(session, paths, IdentifyOptions(match=MatchOptions(threshold=0.0))))  # forced guess
    assert all(r.error is None for r in results), [r.error for r in results if r.error]
    correct = [(row, r) for row, r in zip(rows, results, strict=True) if r.matches[0].sample == row["sample"]]
    with_span = [(row, r) for row, r in correct if row.get("start_s") and row.get("end_s")]
    overlap = sum(r.matches[0].start_s < float(row["end_s"]) and r.matches[0].end_s > float(row["start_s"])
                  for row, r in with_span)
    top1 = len(correct) / len(rows)
    overlap_rate = overlap / len(with_span) if with_span else 1.0
    print(f"serving top-1 {top1:.4f} ({len(correct)}/{len(rows)}); span overlap {overlap_rate:.3f} "
          f"({overlap}/{len(with_span)})")
    if METRICS.exists():
        train_top1 = _find_top1(json.loads(METRICS.read_text()))
        if train_top1 is not None:
            print(f"training test_top1 {train_top1:.4f}")
            assert abs(top1 - train_top1) * len(rows) <= 1.0 + 1e-9
    assert overlap_rate >= SPAN_OVERLAP_MIN


def _null_audio(folder: Path) -> dict[str, str]:
    """Silence, white noise and a drums-only loop (16 kHz, 12 s), as a user's "nothing known" files."""
    from training.data import synth

    rng = np.random.default_rng(7)
    n = 12 * 16000
    drums = synth.drum_loop(rng, n, 92.0)
    clips = {"silence": np.zeros(n), "noise": 0.1 * rng.standard_normal(n),
             "drums": 0.9 * drums / np.abs(drums).max()}
    paths = {}
    for name, clip in clips.items():
        sf.write(folder / f"{name}.wav", clip.astype(np.float32), 16000)
        paths[name] = str(folder / f"{name}.wav")
    return paths


@pytest.mark.slow
@pytest.mark.skipif(not (MODEL.exists() and MANIFEST.exists()), reason="run `make demo` first")
def test_demo_default_threshold(tmp_path: Path) -> None:
    session = ModelSession(MODEL, SessionOptions(device="auto"))
    threshold = session.metadata.raw.get("threshold")
    assert threshold is not None, "the demo model carries no calibrated threshold: retrain and re-export"
    null = _null_audio(tmp_path)
    answers = {name: r.matches for name, r in zip(null, identify(session, list(null.values())), strict=True)}
    print(f"default threshold {threshold:.4f} (far {session.metadata.raw.get('threshold_far')}): {answers}")
    assert all(m == [] for m in answers.values()), answers
    rows = _test_rows()
    paths = [str(MANIFEST.parent / row["song"]) for row in rows]
    forced = list(identify(session, paths, IdentifyOptions(match=MatchOptions(threshold=0.0))))
    default = list(identify(session, paths, IdentifyOptions()))
    right = [i for i, (row, r) in enumerate(zip(rows, forced, strict=True)) if r.matches[0].sample == row["sample"]]
    kept = [i for i in right if default[i].matches and default[i].matches[0].sample == rows[i]["sample"]]
    print(f"test songs: forced guess right {len(right)}/{len(rows)}, kept at the default threshold "
          f"{len(kept)}/{len(right)}")
    assert len(kept) >= KEPT_MIN * len(right)
