"""Profile-then-fix experiments (run after the main table, same process, same clips).

- ORT per-op profile of the plain and optimised base graphs (frontend share, attention fusion, top ops);
- intra-op threads 1 / 2 / ORT default; graph optimisation levels;
- int8 settings (per-tensor vs per-channel, reduce_range, frontend int8 vs fp32): speed and agreement;
- bf16 torch variants (autocast encoder, bf16 weights, autocast including the frontend);
- the GPU code paths exercised on CPU (IO binding, fp16 graph validity);
- ``ast-serve bench`` on the exported tiny model (the 300x real-time goal).
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.experiments.profile_ort import profile
from bench.speed import torch_runners as tr
from bench.speed.artifacts import BenchModel
from bench.speed.graph_tools import quantize_int8
from bench.speed.ort_runners import OrtOptions, count_ops, make_session, runner
from bench.speed.serve_bench import run_serve_bench
from bench.speed.synth import music_clips
from bench.speed.timing import Runner, Unavailable, top1_agreement

log = logging.getLogger(__name__)

EXP_SEED = 7  # clips for experiments: disjoint from calibration and the main table's pool
SERVE_BATCHES = (8, 32)


def _time(run: Runner, x: np.ndarray, calls: int) -> tuple[float, np.ndarray]:
    """Median ms per clip over ``calls`` (after one warm-up call), and the last probs."""
    probs, _ = run(x)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        probs, _ = run(x)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) / len(x), np.asarray(probs)


def _ort_ms(path: Path | None, opts: OrtOptions, x: np.ndarray, calls: int) -> tuple[float, np.ndarray]:
    if path is None:
        raise Unavailable("artifact missing")
    return _time(runner(make_session(path, opts)), x, calls)


def _agree(probs: np.ndarray, ref: np.ndarray) -> float:
    return top1_agreement(probs, ref)[0]


def threads_and_levels(bm: BenchModel, x: np.ndarray, calls: int) -> dict[str, Any]:
    """ms/clip of the optimised graph at 1/2/default threads, and of the plain graph per opt level."""
    out: dict[str, Any] = {"batch": len(x), "calls": calls, "threads_ms_per_clip": {}, "opt_level_ms_per_clip": {}}
    for threads in (1, 2, 0):
        ms, _ = _ort_ms(bm.artifacts.get("onnx_optimized"), OrtOptions(threads=threads), x, calls)
        out["threads_ms_per_clip"][str(threads or "default")] = round(ms, 2)
    for level in ("disable", "basic", "extended", "all"):
        ms, _ = _ort_ms(bm.artifacts.get("onnx"), OrtOptions(opt_level=level), x, calls)
        out["opt_level_ms_per_clip"][level] = round(ms, 2)
    return out


def int8_settings(bm: BenchModel, x: np.ndarray, threads: int, calls: int) -> dict[str, Any]:
    """Quantise the optimised (else plain) graph four ways; ms/clip and top-1 agreement vs ORT fp32."""
    src = bm.artifacts.get("onnx_optimized") or bm.artifacts.get("onnx")
    opts = OrtOptions(threads=threads)
    ref_ms, ref = _ort_ms(src, opts, x, calls)
    out: dict[str, Any] = {"source": str(src.name) if src else None, "fp32_ms_per_clip": round(ref_ms, 2)}
    settings = {
        "per_tensor, frontend int8": dict(per_channel=False, keep_frontend=False),
        "per_tensor, frontend fp32": dict(per_channel=False, keep_frontend=True),
        "per_channel, frontend fp32": dict(per_channel=True, keep_frontend=True),
        "per_channel, frontend fp32, reduce_range": dict(per_channel=True, keep_frontend=True, reduce_range=True),
    }
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        for name, kwargs in settings.items():
            path = Path(tmp) / "q.onnx"
            quantize_int8(src, path, **kwargs)
            ms, probs = _ort_ms(path, opts, x, calls)
            out[name] = {"ms_per_clip": round(ms, 2), "speedup_vs_fp32": round(ref_ms / ms, 2),
                         "top1_agreement_vs_fp32": _agree(probs, ref),
                         "probs_max_abs": float(np.abs(probs - ref).max())}
    out["clips"] = len(x)
    return out


def int8_layer_study(bm: BenchModel, x: np.ndarray, threads: int) -> dict[str, Any]:
    """Which layers' int8 hurts agreement: keep one kind of Linear in fp32 at a time (plain graph, per
    channel, frontend fp32, as ast_export --int8), vs ORT fp32 on the same clips."""
    src = bm.artifacts.get("onnx")
    opts = OrtOptions(threads=threads)
    ref_ms, ref = _ort_ms(src, opts, x, 1)
    out: dict[str, Any] = {"fp32_ms_per_clip": round(ref_ms, 2), "clips": len(x)}
    for scopes in ((), ("mlp.fc2",), ("mlp.fc1",), ("attn.qkv",), ("attn.proj",), ("blocks.0",)):
        with tempfile.TemporaryDirectory(prefix="int8s-") as tmp:
            path = Path(tmp) / "q.onnx"
            quantize_int8(src, path, per_channel=True, keep_frontend=True, fp32_scopes=scopes)
            ms, probs = _ort_ms(path, opts, x, 1)
        out["fp32: " + (",".join(scopes) or "none")] = {
            "ms_per_clip": round(ms, 2), "speedup_vs_fp32": round(ref_ms / ms, 2),
            "top1_agreement_vs_fp32": _agree(probs, ref)}
    return out


def bf16_variants(bm: BenchModel, x: np.ndarray, calls: int) -> dict[str, Any]:
    """Torch bf16 options vs torch fp32 on the same clips."""
    ref_ms, ref = _time(tr.eager(bm.model), x, calls)
    out: dict[str, Any] = {"fp32_ms_per_clip": round(ref_ms, 2), "clips": len(x)}
    variants = {
        "autocast encoder (fp32 frontend)": tr.bf16_encoder(bm.model),
        "bf16 weights encoder (fp32 frontend)": tr.bf16_encoder(bm.model, cast_weights=True),
        "autocast everything (frontend too)": tr.bf16_autocast_all(bm.model),
    }
    for name, run in variants.items():
        ms, probs = _time(run, x, calls)
        out[name] = {"ms_per_clip": round(ms, 2), "speedup_vs_fp32": round(ref_ms / ms, 2),
                     "top1_agreement_vs_fp32": _agree(probs, ref)}
    return out


def gpu_paths_on_cpu(bm: BenchModel, x: np.ndarray) -> dict[str, Any]:
    """IO binding on the CPU EP gives the same probs; the fp16 graph passes the checker (and loads?)."""
    import onnx

    out: dict[str, Any] = {}
    path = bm.artifacts.get("onnx_optimized") or bm.artifacts.get("onnx")
    sess = make_session(path, OrtOptions())
    plain, bound = runner(sess)(x)[0], runner(sess, io_binding=True)(x)[0]
    out["io_binding_cpu_max_abs_diff"] = float(np.abs(plain - bound).max())
    fp16 = bm.artifacts.get("onnx_fp16")
    if fp16 is None:
        out["fp16"] = "not produced"
        return out
    onnx.checker.check_model(str(fp16))
    out["fp16_checker"] = "ok"
    try:
        probs = runner(make_session(fp16, OrtOptions()))(x)[0]
        out["fp16_cpu_top1_agreement"] = _agree(probs, plain)
    except Exception as err:  # noqa: BLE001 - the CPU EP lacks many fp16 kernels; that is expected
        out["fp16_cpu_session"] = f"not runnable on CPU EP: {str(err).splitlines()[0][:160]}"
    return out


def serve_bench(bm: BenchModel, threads: int, seconds: float) -> dict[str, Any]:
    """``ast-serve bench`` on the exported tiny model (plain and optimised graph), a few batch sizes; the plain
    graph under ``--backend auto`` (what users get: OpenVINO bf16 on an AMX CPU) and ``--backend ort``."""
    runs: dict[str, Any] = {}
    for kind, backend in (("onnx", "auto"), ("onnx", "ort"), ("onnx_optimized", "ort")):
        path = bm.artifacts.get(kind)
        if path is None:
            continue
        for batch in SERVE_BATCHES:
            runs[f"{kind} {backend} b{batch}"] = run_serve_bench(path, batch, seconds, threads, backend=backend)
    parsed = [r["parsed"] | {"run": k} for k, r in runs.items() if r.get("parsed", {}).get("real-time_factor")]
    best = max(parsed, key=lambda p: p["real-time_factor"], default=None)
    return {"runs": runs, "best": best}


def _guard(name: str, fn, *args) -> Any:
    log.info("experiment: %s", name)
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - one failed experiment must not lose the others
        log.exception("experiment %s failed", name)
        return {"failed": f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"}


def run_experiments(models: dict[str, BenchModel], threads: int, quick: bool) -> dict[str, Any]:
    """Everything above, on base (profile, threads) and tiny (cheap sweeps, ast-serve)."""
    from bench.experiments.roofline import gemm_rates

    out: dict[str, Any] = {"gemm_roofline": _guard("gemm roofline", gemm_rates, threads)}
    calls = 1 if quick else 2
    for config, bm in models.items():
        x1 = music_clips(1, bm.window_samples, seed=EXP_SEED)  # [1, S]
        x8 = music_clips(8 if config == "base" else 32, bm.window_samples, seed=EXP_SEED + 1)  # [N, S]
        exp: dict[str, Any] = {"attention_nodes": {k: _guard("count", count_ops, v) for k, v in
                                                   bm.artifacts.items() if v and "onnx" in k}}
        for kind in ("onnx", "onnx_optimized"):
            exp[f"profile_{kind}"] = _guard(f"profile {kind}", profile, bm.artifacts.get(kind), x1, calls,
                                            OrtOptions(threads=threads))
        exp["threads_and_levels"] = _guard("threads", threads_and_levels, bm, x1, calls)
        if config != "base":  # four quantisations of AST-base cost minutes; the table has base's two
            exp["int8_settings"] = _guard("int8", int8_settings, bm, x8, threads, 1)
            exp["int8_layer_study"] = _guard("int8 layers", int8_layer_study, bm, x8, threads)
        exp["bf16_torch"] = _guard("bf16", bf16_variants, bm, x8 if config != "base" else x8[:4], 1)
        exp["gpu_paths_on_cpu"] = _guard("gpu paths", gpu_paths_on_cpu, bm, x1)
        if config == "tiny":
            out["serve_bench_tiny"] = _guard("ast-serve", serve_bench, bm, threads, 2.0 if quick else 5.0)
        out[config] = exp
    return out
