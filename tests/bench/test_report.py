"""bench/speed/report.py markdown: every table row has as many cells as the header (pipes in cells escaped)."""

from __future__ import annotations

import re

from bench.speed.report import Report, VariantRow, markdown

UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _report() -> Report:
    ok = VariantRow(config="tiny", variant="ours: onnx fp32", device="cpu", status="ok",
                    batches={1: {"clips_per_s": 10.0, "ms_per_clip": 100.0, "real_time_factor": 10.0}},
                    top1_agreement=1.0, agreement_clips=8, probs_max_abs=1e-6, embedding_rel_err=1e-5)
    failed = VariantRow(config="tiny", variant="ours: int8", device="cpu", status="failed: a | b")
    return Report(date="2026-11-24", device="cpu", env={}, peer_name="peer",
                  settings={"batches": [1], "clip_seconds": {"tiny": 1.0}}, rows=[ok, failed])


def test_markdown_table_rows_have_the_header_cell_count() -> None:
    table = [ln for ln in markdown(_report()).splitlines() if ln.startswith("|")]
    assert len(table) == 4  # header, separator, two rows
    assert r"max \|Δp\|" in table[0]
    widths = {len(UNESCAPED_PIPE.split(ln)) for ln in table}
    assert widths == {len(UNESCAPED_PIPE.split(table[1]))}, table
