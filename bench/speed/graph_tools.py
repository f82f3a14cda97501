"""Graph transforms the bench applies when ast_export does not (and the experiments it runs on them).

- ``optimize_transformer``: ORT's transformer optimizer (model_type "vit"): LayerNorm/GELU/attention fusion.
- ``quantize_int8``: dynamic int8 (weights int8 per tensor or per channel, activations uint8 at run time),
  MatMul/Attention/Gemm only, optionally leaving the frontend in fp32 (its DFT matmul feeds a log: int8 there
  costs accuracy for little time).
- ``to_fp16``: fp16 weights and compute for the encoder, fp32 I/O; the frontend stays fp32 because frame
  power spectra exceed fp16's range (|DFT|^2 of a 400-sample frame at full scale reaches ~1.6e5 > 65504).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx

from bench.experiments.profile_ort import frontend_nodes

log = logging.getLogger(__name__)

QUANT_OPS = ["MatMul", "Attention", "Gemm"]


def optimize_transformer(src: Path, out: Path, ast_cfg: object, opt_level: int = 0) -> str:
    """Offline fusion with onnxruntime.transformers.optimizer; returns a summary of fused ops."""
    from onnxruntime.transformers import optimizer

    model = optimizer.optimize_model(
        str(src), model_type="vit", num_heads=ast_cfg.num_heads, hidden_size=ast_cfg.embed_dim,
        opt_level=opt_level, use_gpu=False,
    )
    model.save_model_to_file(str(out))
    stats = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
    return f"ort transformers optimizer (vit, opt_level={opt_level}): {stats}"


def scope_nodes(model: onnx.ModelProto, scopes: tuple[str, ...]) -> list[str]:
    """Nodes whose torch module path (dynamo ``namespace`` metadata) contains one of ``scopes``
    (e.g. ``"mlp.fc2"``): lets an experiment keep chosen layers in fp32."""
    found = []
    for node in model.graph.node:
        namespace = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        if any(f".{scope}:" in namespace for scope in scopes):
            found.append(node.name)
    return found


def quantize_int8(src: Path, out: Path, per_channel: bool, keep_frontend: bool, reduce_range: bool = False,
                  fp32_scopes: tuple[str, ...] = ()) -> str:
    """Dynamic int8 quantisation; returns a summary of the settings used."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    excluded = sorted(frontend_nodes(model)) if keep_frontend else []
    excluded += scope_nodes(model, fp32_scopes)
    # The dynamo exporter writes value_info for initializers (e.g. the head weight as [C, D]) that the
    # quantizer's shape inference rejects once it rewrites the graph; dropping value_info avoids it.
    del model.graph.value_info[:]
    with tempfile.TemporaryDirectory(prefix="q8-") as tmp:
        stripped = Path(tmp) / "stripped.onnx"
        onnx.save(model, str(stripped))
        quantize_dynamic(
            str(stripped), str(out), weight_type=QuantType.QInt8, per_channel=per_channel,
            reduce_range=reduce_range, op_types_to_quantize=QUANT_OPS, nodes_to_exclude=excluded,
            # fused graphs (com.microsoft ops) defeat shape inference; their weights are float32
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return (f"quantize_dynamic(QInt8, per_channel={per_channel}, reduce_range={reduce_range}, "
            f"ops={QUANT_OPS}, frontend fp32={keep_frontend}, fp32 scopes={list(fp32_scopes)} "
            f"({len(excluded)} nodes kept))")


def to_fp16(src: Path, out: Path) -> str:
    """fp16 encoder, fp32 frontend and I/O (see module doc)."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    blocked = sorted(frontend_nodes(model.model))
    # OnnxModel's converter also re-sorts the graph (the bare float16 helper leaves input casts unsorted).
    model.convert_float_to_float16(keep_io_types=True, node_block_list=blocked)
    dropped = _dedupe_outputs(model.model.graph)
    model.save_model_to_file(str(out))
    return (f"convert_float_to_float16(keep_io_types, {len(blocked)} frontend nodes kept fp32; "
            f"{dropped} duplicate cast nodes dropped)")


def _dedupe_outputs(graph: onnx.GraphProto) -> int:
    """Drop nodes that re-produce an existing output with the same op and inputs (converter bug: one
    fp32 cast is emitted per blocked consumer of a shared constant, all with the same output name)."""
    seen: dict[str, tuple] = {}
    keep, dropped = [], 0
    for node in graph.node:
        key = (node.op_type, tuple(node.input), tuple(str(a) for a in node.attribute))
        if node.output and node.output[0] in seen:
            if seen[node.output[0]] != key:
                raise ValueError(f"fp16 conversion produced conflicting writers of {node.output[0]!r}")
            dropped += 1
            continue
        seen.update({out: key for out in node.output})
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return dropped
