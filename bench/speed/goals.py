"""Issue 5's goals, evaluated on one run's rows (ratios to the peer at the same batch, same run)."""

from __future__ import annotations

from typing import Any

from bench.speed.report import Report, VariantRow

BASE_FP32_GOAL = 2.0  # best fp32 ORT variant vs peer
LOW_PRECISION_GOAL = 4.0  # int8 or bf16 vs peer
AGREEMENT_GOAL = 0.99
TINY_SERVE_RTF_GOAL = 300.0
GEMM_FLOOR_S = 0.52  # AST-base fp32 at ORT's ~480 GFLOP/s GEMM rate on 2 cores (issue 5)
FLOOR_GOAL = 1.3  # "within 1.3x of the GEMM floor"


def _ratios(report: Report, row: VariantRow) -> dict[int, float]:
    out = {}
    for batch in row.batches:
        ratio = report.ratio(row, batch)
        if ratio:
            out[batch] = round(ratio, 3)
    return out


def _best(report: Report, rows: list[VariantRow]) -> tuple[VariantRow | None, int | None, float]:
    best: tuple[VariantRow | None, int | None, float] = (None, None, 0.0)
    for row in rows:
        for batch, ratio in _ratios(report, row).items():
            if ratio > best[2]:
                best = (row, batch, ratio)
    return best


def _entry(report: Report, rows: list[VariantRow], goal: float, need_agreement: bool,
           empty: str = "unmeasured") -> dict[str, Any]:
    row, batch, ratio = _best(report, rows)
    if row is None:
        return {"status": empty, "goal": goal}
    agree = row.top1_agreement
    met = ratio >= goal and (not need_agreement or (agree is not None and agree >= AGREEMENT_GOAL))
    entry = {"variant": row.variant, "batch": batch, "ratio_to_peer": ratio, "goal": goal, "met": met,
             "ratios_by_batch": _ratios(report, row), "top1_agreement": agree}
    ms = (row.batches.get(batch) or {}).get("ms_per_clip")
    if ms:
        entry["s_per_clip"] = ms / 1000.0
    return entry


def _ok(report: Report, config: str, device: str, words: tuple[str, ...]) -> list[VariantRow]:
    return [r for r in report.rows if r.config == config and r.device == device and r.status == "ok"
            and r.role != "peer" and all(w in r.variant for w in words)]


def summarise_goals(report: Report) -> dict[str, Any]:
    """One entry per goal: the best qualifying variant, its ratio, the goal and whether it is met."""
    goals: dict[str, Any] = {}
    fp32 = _ok(report, "base", "cpu", ("ORT", "fp32"))
    goals["cpu_base_fp32_ort_vs_peer"] = entry = _entry(report, fp32, BASE_FP32_GOAL, False)
    if "s_per_clip" in entry:
        best_s = min(b["ms_per_clip"] for r in fp32 for b in r.batches.values() if "ms_per_clip" in b) / 1000
        entry["best_s_per_clip"] = best_s
        entry["x_gemm_floor"] = round(best_s / GEMM_FLOOR_S, 3)
        entry["within_1.3x_floor"] = best_s / GEMM_FLOOR_S <= FLOOR_GOAL
    low = [r for r in _ok(report, "base", "cpu", ()) if ("int8" in r.variant or "bf16" in r.variant)
           and (r.top1_agreement or 0.0) >= AGREEMENT_GOAL]
    goals["cpu_base_int8_or_bf16_vs_peer"] = _entry(
        report, low, LOW_PRECISION_GOAL, True, f"NOT met: no int8/bf16 variant reached {AGREEMENT_GOAL:.0%} top-1 "
        "agreement on this random-weight proxy (see the next line for the fastest one regardless)")
    all_low = [r for r in _ok(report, "base", "cpu", ()) if "int8" in r.variant or "bf16" in r.variant]
    goals["cpu_base_int8_or_bf16_any_agreement"] = _entry(report, all_low, LOW_PRECISION_GOAL, False)
    serve = report.sections.get("experiments", {}).get("serve_bench_tiny", {})
    rtf = (serve.get("best") or {}).get("real-time_factor")
    goals["cpu_tiny_ast_serve_rtf"] = {"goal": TINY_SERVE_RTF_GOAL, "real_time_factor": rtf,
                                       "met": bool(rtf and rtf >= TINY_SERVE_RTF_GOAL),
                                       "definition": "ast-serve bench: song seconds (at its hop) per compute s"}
    gpu_rows = [r for r in report.rows if r.device == "cuda"]
    measured = [r for r in gpu_rows if r.status == "ok"]
    goals["gpu_base_fp16"] = ({"status": "unmeasured: no GPU in this run"} if not measured
                              else {"status": "measured", "rows": [r.variant for r in measured]})
    return goals
