"""Exported artifacts for the bench, cached under bench/.cache/<config>-<seed>-<source digest>/.

Everything comes from ast_export's Python API: the fp32 graph is exported once (``export_fp32_model``) and
the optimised / fp16 graphs are derived from it with ``ast_export.onnx_precision`` and the int8 graph with
``ast_export.onnx_int8.to_int8`` (NNCF static QDQ), then written with ``write_onnx`` (metadata + checks),
exactly as ``ast-export onnx [--optimize|--precision int8|fp16]`` does, minus the parity verification (the
bench measures agreement itself). int8 is calibrated on ``CALIBRATION_WINDOWS`` music-like clips
(``synth.music_clips``, seed :data:`INT8_CALIBRATION_SEED`, not the timing pool's ``run.POOL_SEED``), as many
windows as a user's ``--manifest`` would give. Should a variant fail in ast_export, the bench derives it
locally with ORT's tools and says so in the export log (``bench-local: ...``; for int8 that is ORT dynamic
quantisation, not what users get). ``onnx_int8_pc`` is always bench-local: ORT *dynamic* int8 of the *fused*
graph (per-channel, reduce_range off for VNNI, frontend left in fp32), to see whether quantising after fusion
is faster.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from bench.speed.artifacts import BenchModel
from bench.speed.ort_runners import count_ops

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
INT8_CALIBRATION_SEED = 7  # int8 calibration clips; the timing pool uses run.POOL_SEED = 1
# Ops whose counts tell whether a variant is what it claims (fused attention, int8 matmuls, fp16 casts).
CHECK_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "LayerNormalization", "BiasGelu",
             "FastGelu", "Gelu", "MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "QuantizeLinear",
             "DequantizeLinear", "MatMul", "Cast")


_SOURCES: dict[Path, object] = {}
_FP32: dict[Path, object] = {}  # weights -> exported, checked fp32 ModelProto (exported once per run)


def _source(weights: Path) -> object:
    """ast_export's Source (weights + eager model + spec), loaded once per weights file."""
    from ast_export.source import load_source

    if weights not in _SOURCES:
        _SOURCES[weights] = load_source(weights)
    return _SOURCES[weights]


def _fp32_model(weights: Path) -> object:
    from ast_export.onnx_export import export_fp32_model

    if weights not in _FP32:
        _FP32[weights], exporter = export_fp32_model(_source(weights))
        log.info("fp32 ONNX exported with the %s exporter", exporter)
    return _FP32[weights]


def _write(weights: Path, model: object, out: Path, info: object | None = None) -> None:
    from ast_export.onnx_export import write_onnx
    from ast_export.options import ExportOptions

    options = ExportOptions(info.precision, info.optimized) if info is not None else ExportOptions()
    write_onnx(model, _source(weights), out, options, transform=info)


def _onnx(bm: BenchModel, out: Path) -> str:
    _write(bm.weights, _fp32_model(bm.weights), out)
    return "ast_export export_fp32_model + write_onnx"


def _torchscript(bm: BenchModel, out: Path) -> str:
    from ast_export.options import ExportOptions
    from ast_export.registry import get_format
    from ast_export.source import load_source
    from ast_export.writer import export_artifact

    # A fresh Source: `ast-export torchscript` traces the model as loaded (SDPA), and so must we.
    export_artifact(get_format("torchscript"), load_source(bm.weights), out, ExportOptions())
    return "ast_export.writer.export_artifact torchscript (fresh Source)"


def _variant(precision: str, local: Callable[[BenchModel, Path], str]) -> Callable[[BenchModel, Path], str]:
    """ast_export.onnx_precision's transform for ``precision``; the bench-local one if ast_export lacks/fails it."""

    def build(bm: BenchModel, out: Path) -> str:
        try:
            from ast_export import onnx_precision

            cfg = bm.ast_cfg
            fp32 = _fp32_model(bm.weights)
            if precision == "fp32-optimized":
                model, info = onnx_precision.optimize(fp32, cfg.num_heads, cfg.embed_dim, cfg.depth)
            elif precision == "int8":
                model, info = _int8(bm, fp32)
            else:
                model, info = getattr(onnx_precision, f"to_{precision}")(fp32)
            _write(bm.weights, model, out, info)
            return f"ast_export ({precision}): {info.notes()}"
        except Exception as err:  # noqa: BLE001 - exporter lacks the variant or failed: derive locally
            log.warning("ast_export %s variant failed (%s); deriving locally", precision, str(err)[:300])
            return f"ast_export failed ({type(err).__name__}: {str(err)[:160]}); " + local(bm, out)

    return build


def _int8(bm: BenchModel, fp32: object) -> tuple[object, object]:
    """``ast_export.onnx_int8.to_int8`` (what ``ast-export onnx --precision int8`` runs) on music-like clips."""
    from ast_export.onnx_int8 import Calibration, to_int8
    from ast_export.options import CALIBRATION_WINDOWS
    from bench.speed.synth import music_clips

    clips = music_clips(CALIBRATION_WINDOWS, bm.window_samples, seed=INT8_CALIBRATION_SEED)  # [N, S]
    return to_int8(fp32, Calibration(clips, f"bench music_clips seed {INT8_CALIBRATION_SEED}"))


def _local_optimized(bm: BenchModel, out: Path) -> str:
    from bench.speed.graph_tools import optimize_transformer

    return "bench-local: " + optimize_transformer(_need(bm, "onnx"), out, bm.ast_cfg)


def _local_int8(bm: BenchModel, out: Path) -> str:
    from bench.speed.graph_tools import quantize_int8

    return "bench-local: " + quantize_int8(_need(bm, "onnx"), out, per_channel=True, keep_frontend=True)


def _int8_fused(bm: BenchModel, out: Path) -> str:
    from bench.speed.graph_tools import quantize_int8

    src = bm.artifacts.get("onnx_optimized") or _need(bm, "onnx")
    return f"bench-local from {src.name}: " + quantize_int8(src, out, per_channel=True, keep_frontend=True)


def _local_fp16(bm: BenchModel, out: Path) -> str:
    from bench.speed.graph_tools import to_fp16

    return "bench-local: " + to_fp16(bm.artifacts.get("onnx_optimized") or _need(bm, "onnx"), out)


def _need(bm: BenchModel, kind: str) -> Path:
    path = bm.artifacts.get(kind)
    if path is None:
        raise RuntimeError(f"needs the {kind} artifact, which was not produced")
    return path


BUILDERS: dict[str, Callable[[BenchModel, Path], str]] = {
    "onnx": _onnx,
    "torchscript": _torchscript,
    "onnx_optimized": _variant("fp32-optimized", _local_optimized),
    "onnx_int8": _variant("int8", _local_int8),
    "onnx_int8_pc": _int8_fused,
    "onnx_fp16": _variant("fp16", _local_fp16),
}


def build_artifacts(bm: BenchModel, kinds: tuple[str, ...] = tuple(FILENAMES)) -> None:
    """Fill ``bm.artifacts`` (kind -> path, ``None`` on failure) and ``bm.export_log`` (kind -> how/why)."""
    folder = bm.weights.parent
    log_file = folder / "export_log.json"
    previous = json.loads(log_file.read_text()) if log_file.exists() else {}
    for kind in kinds:
        out = folder / FILENAMES[kind]
        if out.exists():
            bm.artifacts[kind], bm.export_log[kind] = out, f"cached: {previous.get(kind, '?')}"
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
    fresh = {k: v for k, v in bm.export_log.items() if k in FILENAMES and not v.startswith("cached")}
    log_file.write_text(json.dumps({**previous, **fresh}, indent=1))  # provenance survives cached runs
    for kind, path in bm.artifacts.items():
        if path is not None and kind.startswith("onnx"):
            bm.export_log[f"{kind}_ops"] = str(count_ops(path, CHECK_OPS))
