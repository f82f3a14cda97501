"""Exported artifacts for the bench, cached under bench/.cache/<config>-<seed>-<source digest>/.

Plain ONNX and TorchScript come from ast_export (Python API, else its CLI). The optimised, int8 and fp16
graphs come from ast_export when it offers them; otherwise the bench derives them from the plain ONNX with
ORT's own tools and says so in the export log (``bench-local: ...``). ``onnx_int8_pc`` is always bench-local:
it is the quantisation experiment (per-channel, reduce_range off for VNNI, frontend left in fp32).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.artifacts import BenchModel
from bench.ort_runners import count_ops

log = logging.getLogger(__name__)

FILENAMES = {
    "onnx": "model.onnx",
    "torchscript": "model.ts",
    "onnx_optimized": "model.opt.onnx",
    "onnx_int8": "model.int8.onnx",
    "onnx_int8_pc": "model.int8pc.onnx",
    "onnx_fp16": "model.fp16.onnx",
}
EXPORT_TIMEOUT_S = 900
# Ops whose counts tell whether a variant is what it claims (fused attention, int8 matmuls, fp16 casts).
CHECK_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "LayerNormalization", "BiasGelu",
             "FastGelu", "Gelu", "MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "MatMul", "Cast")
# (module, function) candidates in ast_export for each ONNX variant; filled in as ast_export grows.
VARIANT_API: dict[str, tuple[tuple[str, str], ...]] = {
    "optimize": (("ast_export.onnx_variants", "export_optimized"),),
    "int8": (("ast_export.onnx_variants", "export_int8"),),
    "fp16": (("ast_export.onnx_variants", "export_fp16"),),
}


_SOURCES: dict[Path, object] = {}


def _source(weights: Path) -> object:
    """ast_export's Source (weights + eager model + spec), loaded once per weights file."""
    from ast_export.source import load_source

    if weights not in _SOURCES:
        _SOURCES[weights] = load_source(weights)
    return _SOURCES[weights]


def _variant_api(flag: str) -> Callable | None:
    """ast_export's function for an ONNX variant (``optimize``/``int8``/``fp16``), if it offers one."""
    import importlib

    for module, name in VARIANT_API.get(flag, ()):
        try:
            fn = getattr(importlib.import_module(module), name, None)
        except ImportError:
            fn = None
        if fn is not None:
            return fn
    return None


def _api_export(kind: str, weights: Path, out: Path, **flags: bool) -> str:
    """Call ast_export's Python API (its CLI for options the API lacks). Returns how the artifact was made."""
    flag = next((k for k, v in flags.items() if v), None)
    if kind == "onnx" and flag is None:
        from ast_export.onnx_export import export_onnx

        result = export_onnx(_source(weights), out)
        return f"ast_export.onnx_export.export_onnx ({result.notes.get('exporter', '?')})"
    if kind == "torchscript":
        from ast_export.torchscript_export import export_torchscript

        export_torchscript(_source(weights), out)
        return "ast_export.torchscript_export.export_torchscript"
    fn = _variant_api(flag or "")
    if fn is not None:
        fn(_source(weights), out)
        return f"ast_export {fn.__module__}.{fn.__name__}"
    cmd = [sys.executable, "-m", "ast_export.cli", kind, "--weights", str(weights), "--out", str(out)]
    cmd += [f"--{flag}"] if flag else []
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, check=False)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"ast-export {kind} --{flag} failed ({proc.returncode}): {tail}")
    return " ".join(cmd[2:])


def _onnx(bm: BenchModel, out: Path) -> str:
    return _api_export("onnx", bm.weights, out)


def _torchscript(bm: BenchModel, out: Path) -> str:
    return _api_export("torchscript", bm.weights, out)


def _with_flag(flag: str, local: Callable[[BenchModel, Path], str]) -> Callable[[BenchModel, Path], str]:
    def build(bm: BenchModel, out: Path) -> str:
        try:
            return _api_export("onnx", bm.weights, out, **{flag: True})
        except Exception as err:  # noqa: BLE001 - exporter lacks the option or failed: derive locally
            log.warning("ast_export --%s unavailable (%s); deriving locally", flag, str(err)[:200])
            return local(bm, out)

    return build


def _local_optimized(bm: BenchModel, out: Path) -> str:
    from bench.graph_tools import optimize_transformer

    return "bench-local: " + optimize_transformer(_need(bm, "onnx"), out, bm.ast_cfg)


def _local_int8(bm: BenchModel, out: Path) -> str:
    from bench.graph_tools import quantize_int8

    return "bench-local: " + quantize_int8(_need(bm, "onnx"), out, per_channel=False, keep_frontend=False)


def _int8_per_channel(bm: BenchModel, out: Path) -> str:
    from bench.graph_tools import quantize_int8

    src = bm.artifacts.get("onnx_optimized") or _need(bm, "onnx")
    return "bench-local: " + quantize_int8(src, out, per_channel=True, keep_frontend=True)


def _local_fp16(bm: BenchModel, out: Path) -> str:
    from bench.graph_tools import to_fp16

    return "bench-local: " + to_fp16(bm.artifacts.get("onnx_optimized") or _need(bm, "onnx"), out)


def _need(bm: BenchModel, kind: str) -> Path:
    path = bm.artifacts.get(kind)
    if path is None:
        raise RuntimeError(f"needs the {kind} artifact, which was not produced")
    return path


BUILDERS: dict[str, Callable[[BenchModel, Path], str]] = {
    "onnx": _onnx,
    "torchscript": _torchscript,
    "onnx_optimized": _with_flag("optimize", _local_optimized),
    "onnx_int8": _with_flag("int8", _local_int8),
    "onnx_int8_pc": _int8_per_channel,
    "onnx_fp16": _with_flag("fp16", _local_fp16),
}


def build_artifacts(bm: BenchModel, kinds: tuple[str, ...] = tuple(FILENAMES)) -> None:
    """Fill ``bm.artifacts`` (kind -> path, ``None`` on failure) and ``bm.export_log`` (kind -> how/why)."""
    folder = bm.weights.parent
    for kind in kinds:
        out = folder / FILENAMES[kind]
        if out.exists():
            bm.artifacts[kind], bm.export_log[kind] = out, "cached"
            continue
        start = time.perf_counter()
        try:
            how = BUILDERS[kind](bm, out)
        except Exception as err:  # noqa: BLE001 - reported per artifact; dependent variants show "failed"
            log.exception("%s %s export failed", bm.config, kind)
            bm.artifacts[kind], bm.export_log[kind] = None, f"failed: {str(err).splitlines()[0][:200]}"
            continue
        bm.artifacts[kind] = out
        bm.export_log[kind] = f"{how} [{time.perf_counter() - start:.0f} s]"
        log.info("%s %s: %s", bm.config, kind, bm.export_log[kind])
    for kind, path in bm.artifacts.items():
        if path is not None and kind.startswith("onnx"):
            bm.export_log[f"{kind}_ops"] = str(count_ops(path, CHECK_OPS))
