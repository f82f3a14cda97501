"""Markdown for the goals and the experiments (appended to the results table)."""

from __future__ import annotations

from typing import Any


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, float) else "–"


def goals_markdown(goals: dict[str, Any]) -> str:
    """One line per issue-5 goal: best variant, ratio, goal, met?"""
    lines = ["", "**Goals (issue 5), ratios from this run**", ""]
    for name, g in goals.items():
        if "ratio_to_peer" in g:
            extra = ""
            if "x_gemm_floor" in g:
                extra = f"; best {g['best_s_per_clip']:.3f} s/clip = {g['x_gemm_floor']:.2f}× the 0.52 s GEMM floor"
            lines.append(f"- {name}: {g['variant']} at batch {g['batch']}: **{g['ratio_to_peer']:.2f}×** the peer "
                         f"(goal ≥ {g['goal']}×, {'met' if g['met'] else 'NOT met'}); top-1 agreement "
                         f"{_pct(g.get('top1_agreement'))}{extra}")
        elif "real_time_factor" in g:
            rtf = g["real_time_factor"]
            lines.append(f"- {name}: {f'{rtf:.0f}×' if rtf else 'unmeasured'} real time (goal ≥ {g['goal']:.0f}×, "
                         f"{'met' if g['met'] else 'NOT met'}; {g['definition']})")
        else:
            lines.append(f"- {name}: {g.get('status', g)}")
    return "\n".join(lines) + "\n"


def _profile_line(config: str, kind: str, prof: dict[str, Any]) -> str:
    if "failed" in prof or "by_op_ms_per_run" not in prof:
        return f"- {config} {kind}: profile {prof.get('failed', 'missing')}"
    top = ", ".join(f"{op} {ms:.0f}" for op, ms in list(prof["by_op_ms_per_run"].items())[:5])
    return (f"- {config} {kind} (batch {prof['batch']}): {prof['wall_ms_per_run']:.0f} ms/run wall, "
            f"kernels {prof['kernel_ms_per_run']:.0f} ms; frontend {prof['frontend_ms_per_run']:.1f} ms "
            f"({prof['frontend_share']:.1%}); fused attention nodes {prof['attention_nodes']}; top ops (ms): {top}")


def experiments_markdown(exps: dict[str, Any]) -> str:
    """Profiles, thread/opt-level sweeps, int8 and bf16 settings, ast-serve bench."""
    lines = ["", "**Profile and experiments**", ""]
    roof = exps.get("gemm_roofline", {})
    if "gflop_per_s" in roof:
        lines.append(f"- GEMM rates at AST-base's fc1 shape {roof['shape']} (GFLOP/s): {roof['gflop_per_s']}; "
                     f"implied AST-base floor (s/clip): {roof['ast_base_floor_s_per_clip']}")
    for config, exp in exps.items():
        if config in ("serve_bench_tiny", "gemm_roofline"):
            continue
        for kind in ("onnx", "onnx_optimized"):
            lines.append(_profile_line(config, kind, exp.get(f"profile_{kind}", {})))
        tl = exp.get("threads_and_levels", {})
        if "threads_ms_per_clip" in tl:
            lines.append(f"- {config} ORT optimized ms/clip by intra-op threads: {tl['threads_ms_per_clip']}; "
                         f"plain graph by opt level: {tl['opt_level_ms_per_clip']}")
        for key in ("int8_settings", "int8_layer_study", "bf16_torch"):
            data = exp.get(key)
            if not data or "failed" in data:
                continue
            parts = [f"{name}: {v['ms_per_clip']} ms/clip ({v['speedup_vs_fp32']}×, agree "
                     f"{_pct(v['top1_agreement_vs_fp32'])})" for name, v in data.items() if isinstance(v, dict)]
            base = data.get("fp32_ms_per_clip")
            lines.append(f"- {config} {key} (fp32 {base} ms/clip, {data.get('clips')} clips): " + "; ".join(parts))
        gpu = exp.get("gpu_paths_on_cpu")
        if gpu:
            lines.append(f"- {config} GPU code paths on CPU: {gpu}")
    serve = exps.get("serve_bench_tiny", {})
    for name, run in (serve.get("runs") or {}).items():
        p = run.get("parsed", {})
        lines.append(f"- ast-serve bench tiny {name}: {p.get('clips/s', '?')} clips/s, real-time factor "
                     f"{p.get('real-time_factor', '?')}× (song s at default hop), p50 {p.get('latency_p50', '?')} ms")
    return "\n".join(lines) + "\n"
