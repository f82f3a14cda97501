"""ONNX variants derived from the checked fp32 graph: ``fp16`` (CUDA), ``int8`` (CPU) and an ORT-optimised fp32
graph with fused attention.

All three keep the frontend (mean removal, framing, matmul-DFT, power spectrum, mel matmul, log,
normalisation, pad/crop) in fp32: the power spectrum spans ~1e-10..1e6 before the log, far beyond fp16's range,
and the DFT/mel matmuls would lose the spectrum's low bins to int8 rounding. The frontend is found as the
ancestors of the patch-embedding ``Conv`` (the encoder's first layer), independent of how nodes are named.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx

from ast_export.errors import ExportError

logger = logging.getLogger(__name__)

# Module-path fragment of the frontend in node names / name scopes, used only if no patch Conv is found.
FRONTEND_SCOPE = "fbank"
# Ops whose reductions are precision-sensitive; kept in fp32 in the fp16 graph (Casts around them are cheap).
FP16_FP32_OPS = ("LayerNormalization", "SkipLayerNormalization", "ReduceMean", "Pow", "Sqrt", "Softmax")
FUSED_ATTENTION_OPS = ("Attention", "MultiHeadAttention")
OPTIMIZER_MODEL_TYPE = "vit"


@dataclass
class VariantInfo:
    """What a variant transform did, for the log and the verify report."""

    precision: str
    frontend_nodes: int
    fused_attention: int | None = None
    layers: int | None = None
    fused_ops: dict[str, int] | None = None


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (block/exclude lists address nodes by name)."""
    seen: Counter[str] = Counter()
    for index, node in enumerate(model.graph.node):
        if not node.name or seen[node.name]:
            node.name = f"{node.op_type}_{index}"
        seen[node.name] += 1


def frontend_node_names(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes computing the encoder's input (frontend + normalisation + pad/crop)."""
    name_nodes(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    if not convs:
        names = [n.name for n in model.graph.node if FRONTEND_SCOPE in n.name.lower()]
        logger.warning("no patch Conv found; matched %d frontend nodes by name", len(names))
        return names
    frontier, found = [convs[0].input[0]], {}
    while frontier:
        node = producers.get(frontier.pop())
        if node is None or node.name in found:
            continue
        found[node.name] = node
        frontier.extend(node.input)
    return list(found)


def drop_input_cast_roundtrips(model: onnx.ModelProto) -> int:
    """Bypass ``fp32 input -> Cast(fp16) -> Cast(fp32)`` chains that ``keep_io_types`` leaves in front of
    fp32-blocked nodes: they would round the waveform to 11 bits (and the converter even emits the second Cast
    once per consumer under one name, breaking SSA). Returns the number of Casts removed."""
    fp32_inputs = {i.name for i in model.graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    to_fp16 = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Cast" and n.input[0] in fp32_inputs
               and onnx.helper.get_attribute_value(n.attribute[0]) == onnx.TensorProto.FLOAT16}
    back = [n for n in model.graph.node if n.op_type == "Cast" and n.input[0] in to_fp16
            and onnx.helper.get_attribute_value(n.attribute[0]) == onnx.TensorProto.FLOAT]
    rename = {n.output[0]: to_fp16[n.input[0]] for n in back}
    for node in back:
        model.graph.node.remove(node)
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
    used = {name for n in model.graph.node for name in n.input} | {o.name for o in model.graph.output}
    dead = [n for n in model.graph.node if n.op_type == "Cast" and n.output[0] in to_fp16 and n.output[0] not in used]
    for node in dead:
        model.graph.node.remove(node)
    return len(back) + len(dead)


def dedupe_casts(model: onnx.ModelProto) -> int:
    """Remove repeated identical Casts (same input, target type and output name) that the fp16 converter emits
    when several fp32-blocked nodes read one fp16 tensor; returns how many were removed."""
    seen, dupes = set(), []
    for node in model.graph.node:
        if node.op_type != "Cast":
            continue
        key = (node.input[0], node.output[0], onnx.helper.get_attribute_value(node.attribute[0]))
        (dupes.append(node) if key in seen else seen.add(key))
    for node in dupes:
        model.graph.node.remove(node)
    return len(dupes)


def to_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, VariantInfo]:
    """fp16 weights and activations for the encoder; fp32 I/O, frontend and normalisation reductions."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.ModelProto.FromString(model.SerializeToString())  # leave the caller's graph alone
    frontend = frontend_node_names(model)
    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False,
                                         op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(FP16_FP32_OPS),
                                         node_block_list=frontend)
    drop_input_cast_roundtrips(converted)
    dedupe_casts(converted)
    del converted.graph.value_info[:]  # converter-era types are stale after the rewiring; ORT re-infers them
    OnnxModel(converted).topological_sort()  # the I/O Casts are appended at the end; the checker wants order
    return converted, VariantInfo("fp16", len(frontend))


def to_int8(model: onnx.ModelProto) -> tuple[onnx.ModelProto, VariantInfo]:
    """Dynamic int8 quantisation of the encoder's MatMul weights (per channel); frontend excluded."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.graph.value_info[:]  # stale exporter shapes trip the quantizer's strict shape inference
    frontend = frontend_node_names(model)
    with tempfile.TemporaryDirectory(prefix="ast-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save_model(model, str(src))
        quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8, nodes_to_exclude=frontend,
                         extra_options={"MatMulConstBOnly": True})
        quantized = onnx.load(str(dst))
    return quantized, VariantInfo("int8", len(frontend))


def _count_fused(model: onnx.ModelProto) -> tuple[int, dict[str, int]]:
    ops = Counter(n.op_type for n in model.graph.node)
    stats = {k: v for k, v in ops.items() if k in FUSED_ATTENTION_OPS or "LayerNorm" in k or "Gelu" in k}
    return sum(ops[o] for o in FUSED_ATTENTION_OPS), stats


def _ort_optimizer(model: onnx.ModelProto, num_heads: int, hidden_size: int) -> onnx.ModelProto:
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(onnx.ModelProto.FromString(model.SerializeToString()),
                               model_type=OPTIMIZER_MODEL_TYPE, num_heads=num_heads, hidden_size=hidden_size,
                               opt_level=0, use_gpu=False)
    return optimized.model


def _onnxscript_fusions(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    fused, counts = optimize_for_ort(ir.from_proto(model))
    logger.debug("onnxscript ORT fusions: %s", counts)
    return ir.to_proto(fused)


def optimize(model: onnx.ModelProto, num_heads: int, hidden_size: int, depth: int
             ) -> tuple[onnx.ModelProto, VariantInfo]:
    """Fuse attention (and LayerNorm/Gelu) into ORT contrib ops; offline and EP-neutral.

    ORT's ``transformers.optimizer`` (model_type ``vit``) is tried first. Its attention patterns were written
    for the legacy exporter; on dynamo graphs (qkv -> Reshape -> Transpose -> Slice/Squeeze unbind) it fuses
    nothing, so onnxscript's ORT fusions, written for dynamo graphs, are applied instead
    (matmul-softmax-matmul -> SDPA -> ``MultiHeadAttention``). The better of the two is kept.
    """
    frontend = len(frontend_node_names(model))
    try:
        best = _ort_optimizer(model, num_heads, hidden_size)
    except Exception as err:  # the optimizer raises assorted errors on unexpected patterns
        logger.info("ORT transformer optimizer failed (%s: %s)", type(err).__name__, err)
        best = None
    fused, stats = _count_fused(best) if best is not None else (0, {})
    if fused < depth:
        logger.info("ORT transformer optimizer fused %d of %d attention blocks; using onnxscript's ORT fusions",
                    fused, depth)
        try:
            candidate = _onnxscript_fusions(model)
        except Exception as err:  # rewriter failures are not fatal if the ORT result exists
            if best is None:
                raise ExportError(f"attention fusion failed: {type(err).__name__}: {err}") from err
            candidate = best
        if _count_fused(candidate)[0] > fused:
            best, (fused, stats) = candidate, _count_fused(candidate)
    logger.info("optimizer: fused %d attention subgraphs of %d layers (%s)", fused, depth, stats)
    return best, VariantInfo("fp32-optimized", frontend, fused, depth, stats)
