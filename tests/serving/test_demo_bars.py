"""Issue-4 bars on the demo model (slow; needs `make demo` first, else skipped).

- ``ast-serve identify`` top-1 over the demo test songs equals training's ``test_top1`` within one song;
- the predicted span overlaps the true ``start_s``-``end_s`` for >= 90 % of correctly identified songs.
Prints the figures (run with ``-s``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from serving.identify import IdentifyOptions, identify
from serving.session import ModelSession, SessionOptions

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "runs" / "demo" / "modelo_audio.onnx"
METRICS = ROOT / "runs" / "demo" / "metrics.json"
MANIFEST = ROOT / "data" / "demo" / "manifest.csv"
SPAN_OVERLAP_MIN = 0.90


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
    results = list(identify(session, paths, IdentifyOptions()))
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
