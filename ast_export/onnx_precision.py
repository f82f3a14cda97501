"""Reduced-precision and optimised ONNX graphs derived from the checked fp32 graph: ``fp16`` (CUDA), ``int8``
(CPU; static, calibrated, in ``onnx_int8``) and an ORT-optimised fp32 graph with fused attention (``--optimize``).

All three keep the frontend (mean removal, framing, matmul-DFT, power spectrum, mel matmul, log,
normalisation, pad/crop) in fp32: the power spectrum spans ~1e-10..1e6 before the log, far beyond fp16's range,
and the DFT/mel matmuls would lose the spectrum's low bins to int8 rounding. The frontend is found as the
ancestors of the patch-embedding ``Conv`` (the encoder's first layer), independent of how nodes are named.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import onnx

from ast_export.errors import ExportError
from ast_export.spec import FP32

logger = logging.getLogger(__name__)

# Module-path fragment of the frontend in node names / name scopes, used only if no patch Conv is found.
FRONTEND_SCOPE = "fbank"
# Ops whose reductions are precision-sensitive; kept in fp32 in the fp16 graph (Casts around them are cheap).
FP16_FP32_OPS = ("LayerNormalization", "SkipLayerNormalization", "ReduceMean", "Pow", "Sqrt", "Softmax")
FUSED_ATTENTION_OPS = ("Attention", "MultiHeadAttention")
OPTIMIZER_MODEL_TYPE = "vit"


@dataclass
class TransformInfo:
    """What a precision conversion or the optimiser did, for the log and the metadata's ``transform``."""

    precision: str
    optimized: bool
    frontend_nodes: int
    fused_attention: int | None = None
    layers: int | None = None
    fused_ops: dict[str, int] | None = None
    quantizer: str | None = None
    calibration_windows: int | None = None
    calibration_source: str | None = None

    def notes(self) -> dict[str, Any]:
        """The fields that are set, as the metadata's ``transform`` holds them."""
        return {key: value for key, value in asdict(self).items() if value is not None}


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


ENCODER_PREFIX = "enc16_"


def _split_encoder(model: onnx.ModelProto, frontend: set[str]) -> tuple[onnx.ModelProto, list[onnx.NodeProto]]:
    """The encoder (every non-frontend node) as its own model whose inputs are the frontend tensors it reads;
    initializers it shares with the frontend are copied under a prefixed name so each side owns its dtype."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.input]}
    produced = {o for n in model.graph.node if n.name in frontend for o in n.output}
    graph_inputs = {i.name for i in model.graph.input}
    enc_nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in model.graph.node if n.name not in frontend]
    front_nodes = [n for n in model.graph.node if n.name in frontend]
    front_reads = {i for n in front_nodes for i in n.input}
    inits = {i.name: i for i in model.graph.initializer}
    enc_reads = {i for n in enc_nodes for i in n.input if i}
    shared = enc_reads & front_reads & set(inits)
    for node in enc_nodes:
        for k, name in enumerate(node.input):
            if name in shared:
                node.input[k] = ENCODER_PREFIX + name
    enc_inits = [inits[n] for n in sorted(enc_reads & set(inits) - shared)]
    for name in sorted(shared):
        copy = onnx.TensorProto.FromString(inits[name].SerializeToString())
        copy.name = ENCODER_PREFIX + name
        enc_inits.append(copy)
    boundary = sorted(enc_reads & (produced | graph_inputs))
    graph = onnx.helper.make_graph(enc_nodes, "encoder", [types[b] for b in boundary], list(model.graph.output),
                                   enc_inits)
    sub = onnx.helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return sub, front_nodes


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


def to_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, TransformInfo]:
    """fp16 weights and activations for the encoder; fp32 I/O, frontend and normalisation reductions.

    ``convert_float_to_float16`` wraps every blocked node in Cast(fp32)/Cast(fp16) pairs, so blocking the
    frontend node by node would still round the power spectrum through fp16 between its nodes (and overflow it).
    Instead the encoder is cut out as a model of its own, converted with ``keep_io_types`` (its fp32 inputs are
    the frontend's outputs), and joined back behind the untouched fp32 frontend.
    """
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.ModelProto.FromString(model.SerializeToString())
    frontend = frontend_node_names(model)
    encoder, front_nodes = _split_encoder(model, set(frontend))
    encoder = convert_float_to_float16(encoder, keep_io_types=True, disable_shape_infer=False,
                                       op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(FP16_FP32_OPS))
    dedupe_casts(encoder)
    front_inits = {i for n in front_nodes for i in n.input}
    inits = [i for i in model.graph.initializer if i.name in front_inits] + list(encoder.graph.initializer)
    graph = onnx.helper.make_graph(front_nodes + list(encoder.graph.node), model.graph.name,
                                   list(model.graph.input), list(encoder.graph.output), inits)
    merged = onnx.helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    merged.metadata_props.extend(model.metadata_props)
    OnnxModel(merged).topological_sort()
    return merged, TransformInfo("fp16", False, len(frontend))


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
             ) -> tuple[onnx.ModelProto, TransformInfo]:
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
    return best, TransformInfo(FP32, True, frontend, fused, depth, stats)
