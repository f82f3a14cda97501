"""ONNX writer: the whole scoring graph (frontend included) as one self-contained, checked file.

Export goes through the dynamo exporter (``torch.onnx.export(dynamo=True)``, opset >= 18). Should it fail in
some environment, the legacy TorchScript-based exporter is tried and the reason is logged: the frontend has no
FFT (its DFT is a matmul), so both produce the same operator set. Attention is exported in eager form
(matmul/softmax/matmul) so that ``onnxruntime.transformers.optimizer`` can fuse it (``--optimize``).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch

from ast_export.errors import ExportError
from ast_export.metadata import build_metadata, set_onnx_metadata
from ast_export.source import ExportResult, Source, eager_attention, file_size
from ast_export.spec import BATCH_AXIS, DEFAULT_OPSET, FORBIDDEN_OPS, INPUT_NAME, MIN_OPSET, OUTPUT_NAMES

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
                               type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        try:
            _legacy_export(model, src, out, opset)
        except Exception as err:
            raise ExportError(f"ONNX export failed: {type(err).__name__}: {str(err).splitlines()[0]}") from err
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
        raise ExportError(f"ONNX checker rejected the graph: {str(err).splitlines()[0]}") from err


def save_onnx(model: onnx.ModelProto, out: Path) -> None:
    """Save as one file (no external data) and remove a stale ``<out>.data`` left by the exporter."""
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(out), save_as_external_data=False)
    stale = out.with_name(out.name + ".data")
    if stale.exists():
        stale.unlink()


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


def write_onnx(model: onnx.ModelProto, src: Source, out: Path, *, precision: str, opset: int,
               extra: dict | None = None) -> dict:
    """Attach metadata (plus ``extra`` keys), re-check and save ``model``; returns the metadata written."""
    meta = build_metadata(src.wf, src.sha256, artifact_format="onnx", precision=precision, opset=opset)
    meta.update(extra or {})
    set_onnx_metadata(model, meta)
    check_onnx(model)
    save_onnx(model, out)
    return meta


def export_onnx(src: Source, out: Path, opset: int = DEFAULT_OPSET, prefer_dynamo: bool = True) -> ExportResult:
    """Export the fp32 scoring graph of ``src`` to ``out`` (see module docstring)."""
    start = time.perf_counter()
    model, exporter = export_fp32_model(src, opset, prefer_dynamo)
    meta = write_onnx(model, src, out, precision="fp32", opset=opset)
    seconds = time.perf_counter() - start
    return ExportResult(out, "onnx", "fp32", seconds, file_size(out), meta, {"exporter": exporter})
