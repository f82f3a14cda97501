"""ONNX: the whole scoring graph (frontend included) as one self-contained, checked file, and its format record.

Export goes through the dynamo exporter (``torch.onnx.export(dynamo=True)``, opset >= 18). Should it fail in
some environment, the legacy TorchScript-based exporter is tried and the reason is logged: the frontend has no
FFT (its DFT is a matmul), so both produce the same operator set. Attention is exported in eager form
(matmul/softmax/matmul) so that ``onnxruntime.transformers.optimizer`` can fuse it (``--optimize``).

``--precision fp16|int8`` and ``--optimize`` derive their graph from the checked fp32 one (``onnx_precision``;
int8 is NNCF's static, calibrated QDQ graph, ``onnx_int8``);
the metadata goes into ``metadata_props`` under ``serving.contract.METADATA_KEY``; the runners are ORT CPU and,
when a GPU works, ORT CUDA with TF32 off (``runners.onnx_runners``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import click
import onnx
import torch

from ast_export import onnx_int8, onnx_precision
from ast_export.artifact import ArtifactFormat, Built
from ast_export.errors import ArtifactError, ExportError
from ast_export.onnx_precision import TransformInfo
from ast_export.options import ExportOptions
from ast_export.runners import onnx_runners
from ast_export.source import ExportResult, Source, eager_attention
from ast_export.spec import (
    BATCH_AXIS,
    DEFAULT_OPSET,
    FORBIDDEN_OPS,
    FP32,
    FP32_ORT,
    MIN_OPSET,
    REDUCED_PRECISION,
)
from ast_export.writer import write_artifact
from serving.contract import INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, atomic_write, one_line

logger = logging.getLogger(__name__)

# protobuf's hard limit for one serialised message; above it ONNX needs external data.
PROTOBUF_LIMIT_BYTES = 2 * 1024**3


def iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph``, including those of nested subgraphs (If/Loop/Scan bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from iter_nodes(sub)


def forbidden_nodes(model: onnx.ModelProto) -> list[str]:
    """Names/types of DFT/STFT nodes anywhere in the model (main graph, subgraphs, local functions)."""
    graphs = [model.graph]
    found = [f"{n.op_type}:{n.name}" for g in graphs for n in iter_nodes(g) if n.op_type in FORBIDDEN_OPS]
    for func in model.functions:
        found += [f"{n.op_type}:{func.name}/{n.name}" for n in func.node if n.op_type in FORBIDDEN_OPS]
    return found


def _dynamo_export(model: torch.nn.Module, src: Source, out: Path, opset: int) -> None:
    torch.onnx.export(model, (src.spec.example_input(),), str(out), dynamo=True, opset_version=opset,
                      input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                      dynamic_shapes=src.spec.torch_dynamic_shapes(), external_data=False,
                      optimize=True, verbose=False)


def _legacy_export(model: torch.nn.Module, src: Source, out: Path, opset: int) -> None:
    axes = {name: {0: BATCH_AXIS} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    torch.onnx.export(model, (src.spec.example_input(),), str(out), dynamo=False, opset_version=opset,
                      input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), dynamic_axes=axes,
                      do_constant_folding=True)


def torch_to_onnx(src: Source, out: Path, opset: int, prefer_dynamo: bool = True) -> str:
    """Write the raw export of ``src.model`` to ``out``; returns the exporter used (``dynamo``/``legacy``)."""
    with eager_attention(src.model) as model:  # src.model gets its own attention setting back afterwards
        if prefer_dynamo:
            try:
                _dynamo_export(model, src, out, opset)
                return "dynamo"
            except Exception as err:  # the exporter raises many types; we log and fall back
                logger.warning("dynamo ONNX exporter failed (%s: %s); falling back to the legacy exporter",
                               type(err).__name__, one_line(err))
        try:
            _legacy_export(model, src, out, opset)
        except Exception as err:
            raise ExportError(f"ONNX export failed: {type(err).__name__}: {one_line(err)}") from err
        return "legacy"


def load_self_contained(path: Path) -> onnx.ModelProto:
    """Load ``path`` with any external-data side files pulled in, so the result saves as one file."""
    model = onnx.load(str(path), load_external_data=True)
    if model.ByteSize() >= PROTOBUF_LIMIT_BYTES:
        raise ExportError(f"model is {model.ByteSize() / 1e9:.1f} GB, above protobuf's 2 GB single-file "
                          "limit; self-contained export is impossible")
    return model


def _contrib_domains(model: onnx.ModelProto) -> set[str]:
    """Non-standard operator domains used by nodes (e.g. ``com.microsoft`` after fusion/quantisation)."""
    standard = {"", "ai.onnx", "ai.onnx.ml"}
    return {n.domain for n in iter_nodes(model.graph) if n.domain not in standard}


def check_onnx(model: onnx.ModelProto) -> None:
    """Run the ONNX checker and the no-DFT/STFT rule; raise ExportError.

    The full check (strict shape inference) needs every op's schema, which ONNX lacks for ORT's contrib ops
    (``com.microsoft``: fused attention, quantised matmuls); graphs using them get the structural check, and
    onnxruntime loading them in ``verify`` covers the rest.
    """
    bad = forbidden_nodes(model)
    if bad:
        raise ExportError(f"graph holds {len(bad)} DFT/STFT node(s) ({', '.join(bad[:3])}); the frontend "
                          "must be matmul-based so every node can run on the CUDA EP")
    contrib = _contrib_domains(model)
    known = {o.domain for o in model.opset_import}
    for domain in sorted(contrib - known):  # some rewriters forget to declare the domain they introduce
        model.opset_import.append(onnx.helper.make_opsetid(domain, 1))
    try:
        onnx.checker.check_model(model, full_check=not contrib)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"ONNX checker rejected the graph: {one_line(err)}") from err


def export_fp32_model(src: Source, opset: int = DEFAULT_OPSET, prefer_dynamo: bool = True
                      ) -> tuple[onnx.ModelProto, str]:
    """Export ``src`` to an in-memory, checked, self-contained fp32 ModelProto; returns it and the exporter."""
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; use >= {MIN_OPSET}")
    with tempfile.TemporaryDirectory(prefix="ast-export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        exporter = torch_to_onnx(src, raw, opset, prefer_dynamo)
        model = load_self_contained(raw)
    check_onnx(model)
    return model, exporter


@dataclass(frozen=True)
class TransformInputs:
    """What a precision transform may read: the checked fp32 graph, the weights it came from and the options
    (int8 takes its calibration windows from ``options.calibration``)."""

    model: onnx.ModelProto
    src: Source
    options: ExportOptions


def _fp16(inputs: TransformInputs) -> tuple[onnx.ModelProto, TransformInfo]:
    return onnx_precision.to_fp16(inputs.model)


def _int8(inputs: TransformInputs) -> tuple[onnx.ModelProto, TransformInfo]:
    onnx_int8.import_nncf()  # fail on a missing NNCF before decoding the calibration audio
    calibration = onnx_int8.calibration_for(inputs.src, inputs.options.calibration)
    return onnx_int8.to_int8(inputs.model, calibration)


# The reduced precisions, derived from the fp32 graph (fp32 itself needs no conversion).
PRECISION_TRANSFORMS: dict[str, Callable[[TransformInputs], tuple[onnx.ModelProto, TransformInfo]]] = {
    "fp16": _fp16,
    "int8": _int8,
}


def convert(model: onnx.ModelProto, src: Source, options: ExportOptions
            ) -> tuple[onnx.ModelProto, TransformInfo | None]:
    """The graph ``options`` ask for, derived from the checked fp32 ``model`` (and checked again)."""
    info = None
    if options.optimize:
        cfg = src.wf.model_config
        model, info = onnx_precision.optimize(model, cfg.num_heads, cfg.embed_dim, cfg.depth)
        logger.info("fused %d of %d layers' attention", info.fused_attention, info.layers)
    elif options.precision in PRECISION_TRANSFORMS:
        model, info = PRECISION_TRANSFORMS[options.precision](TransformInputs(model, src, options))
    if info is not None:
        check_onnx(model)
    return model, info


def build_onnx(src: Source, options: ExportOptions) -> Built:
    """The ONNX graph of ``src`` at ``options``' precision, checked; ``settings["opset"]`` picks the opset."""
    opset = int(options.settings.get("opset", DEFAULT_OPSET))
    model, exporter = export_fp32_model(src, opset)
    model, info = convert(model, src, options)
    metadata = {"opset": opset, **({"transform": info.notes()} if info else {})}
    return Built(model, metadata, {"exporter": exporter, **(info.notes() if info else {})})


def write_onnx_metadata(model: onnx.ModelProto, text: str) -> None:
    """Put ``text`` into ``model.metadata_props`` under the contract's key, replacing an older value."""
    kept = {p.key: p.value for p in model.metadata_props if p.key != METADATA_KEY}
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {**kept, METADATA_KEY: text})


def save_onnx(model: onnx.ModelProto, out: Path) -> None:
    """Save atomically as one file (no external data) and remove a stale ``<out>.data`` left beside it."""
    def write(handle: IO[bytes]) -> None:
        handle.write(model.SerializeToString())
    atomic_write(out, write)
    out.with_name(out.name + ".data").unlink(missing_ok=True)


def read_onnx_metadata_text(path: Path) -> str | None:
    """The metadata text of an ONNX file (weights are not loaded); None when it has none."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError / OSError of several kinds
        raise ArtifactError(f"{path}: not a readable ONNX file ({one_line(err)})") from err
    return next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)


def write_onnx(model: onnx.ModelProto, src: Source, out: Path, options: ExportOptions | None = None,
               transform: TransformInfo | None = None, opset: int = DEFAULT_OPSET) -> ExportResult:
    """Write an already built graph (e.g. one derived by ``onnx_precision``) with its metadata, as ``ast-export
    onnx`` would; for callers that hold a ModelProto (bench, tests)."""
    metadata = {"opset": opset, **({"transform": transform.notes()} if transform else {})}
    return write_artifact(FORMAT, Built(model, metadata), src, out, options or ExportOptions())


FORMAT = ArtifactFormat(
    name="onnx",
    suffixes=(".onnx",),
    summary="Export the scoring graph (frontend included) to one self-contained ONNX file.",
    build=build_onnx,
    write_metadata=write_onnx_metadata,
    save=save_onnx,
    read_metadata=read_onnx_metadata_text,
    runners=onnx_runners,
    tolerances={FP32: FP32_ORT, "fp16": REDUCED_PRECISION, "int8": REDUCED_PRECISION},
    optimized_tolerance=FP32_ORT,
    options=(click.Option(["--opset"], type=click.IntRange(min=MIN_OPSET), default=DEFAULT_OPSET,
                          show_default=True, help="ONNX opset."),),
)
