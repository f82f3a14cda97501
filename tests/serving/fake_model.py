"""A tiny, valid ast-sampleid ONNX artifact built with ``onnx.helper`` (no torch, no ast_export).

Graph: waveform [batch, W] -> frames [batch, F, W/F] -> log mean energy [batch, F] -> MatMul -> Softmax
(``probs``), and MatMul -> L2 normalisation (``embedding``). It honours the exported-graph contract of
DESIGN.md, so serving can be tested fast and independently of the real exporter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SAMPLE_RATE = 16000
WINDOW = 16000  # 1 s windows keep tests fast
HOP = 8000
FRAMES = 40
DIM = 8
LABELS = ["r000", "r001", "r002", "r003"]
OPSET = 18
EPS = 1e-6


def metadata(**overrides: Any) -> dict[str, Any]:
    meta = {
        "format_version": 1, "labels": LABELS, "sample_rate": SAMPLE_RATE, "window_samples": WINDOW,
        "hop_samples": HOP, "fbank": {"num_mel_bins": 0}, "norm": {"mean": 0.0, "std": 1.0},
        "model_config": {"name": "fake"}, "weights_sha256": "0" * 64, "exporter_version": "test",
        "opset": OPSET, "precision": "fp32",
    }
    meta.update(overrides)
    return meta


def build_model(
    path: Path,
    meta: dict[str, Any] | None | str = "default",
    input_name: str = "waveform",
    output_names: tuple[str, str] = ("probs", "embedding"),
    window: int = WINDOW,
    classes: int = len(LABELS),
    seed: int = 0,
) -> Path:
    """Write the fake model to ``path``; ``meta=None`` omits the metadata, a str key uses defaults."""
    rng = np.random.default_rng(seed)
    probs_name, emb_name = output_names
    nodes = [
        helper.make_node("Reshape", [input_name, "shape"], ["frames"]),
        helper.make_node("Mul", ["frames", "frames"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "axes"], ["energy"], keepdims=0),
        helper.make_node("Add", ["energy", "eps"], ["energy_eps"]),
        helper.make_node("Log", ["energy_eps"], ["loge"]),
        helper.make_node("MatMul", ["loge", "w1"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [probs_name], axis=1),
        helper.make_node("MatMul", ["loge", "w2"], ["proj"]),
        helper.make_node("LpNormalization", ["proj"], [emb_name], axis=1, p=2),
    ]
    inits = [
        numpy_helper.from_array(np.array([0, FRAMES, window // FRAMES], np.int64), "shape"),
        numpy_helper.from_array(np.array([2], np.int64), "axes"),
        numpy_helper.from_array(np.array(EPS, np.float32), "eps"),
        numpy_helper.from_array((rng.standard_normal((FRAMES, classes)) * 0.1).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((FRAMES, DIM)).astype(np.float32), "w2"),
    ]
    graph = helper.make_graph(
        nodes, "fake_ast_sampleid",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", window])],
        [helper.make_tensor_value_info(probs_name, TensorProto.FLOAT, ["batch", classes]),
         helper.make_tensor_value_info(emb_name, TensorProto.FLOAT, ["batch", DIM])],
        inits,
    )
    return _save(graph, path, meta)


def _save(graph: onnx.GraphProto, path: Path, meta: dict[str, Any] | None | str) -> Path:
    """Wrap ``graph`` in a model with ``meta`` ("default": :func:`metadata`; None: none), check it, save it."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    if meta == "default":
        meta = metadata()
    if meta is not None:
        helper.set_model_props(model, {"ast_sampleid": json.dumps(meta)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


FP_FRAMES = 40  # 25 ms frames in a 1 s window
FP_DIM = 32
FP_FLOOR = 1e-4  # energy floor: quiet frames (and light noise) all read as the floor


def build_fingerprint_model(path: Path, meta: dict[str, Any] | None | str = "default", seed: int = 0,
                            window: int = WINDOW) -> Path:
    """A fake export whose ``embedding`` is content-specific: a fixed random projection of the window's
    per-frame log energies with their mean removed (so gain does not count), L2-normalised.

    Same contract as :func:`build_model` (``waveform`` -> ``probs``, ``embedding``); retrieval tests use it
    because the plain fake's embedding moves with the gain. An all-silent window embeds a zero vector
    normalised (NaN), which serving must drop.
    """
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Reshape", ["waveform", "shape"], ["frames"]),
        helper.make_node("Mul", ["frames", "frames"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "axes"], ["energy"], keepdims=0),
        helper.make_node("Add", ["energy", "floor"], ["energy_floor"]),
        helper.make_node("Log", ["energy_floor"], ["loge"]),
        helper.make_node("ReduceMean", ["loge", "frame_axis"], ["mean"], keepdims=1),
        helper.make_node("Sub", ["loge", "mean"], ["centred"]),
        helper.make_node("MatMul", ["loge", "w1"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        helper.make_node("MatMul", ["centred", "w2"], ["proj"]),
        helper.make_node("LpNormalization", ["proj"], ["embedding"], axis=1, p=2),
    ]
    inits = [
        numpy_helper.from_array(np.array([0, FP_FRAMES, window // FP_FRAMES], np.int64), "shape"),
        numpy_helper.from_array(np.array([2], np.int64), "axes"),
        numpy_helper.from_array(np.array([1], np.int64), "frame_axis"),
        numpy_helper.from_array(np.array(FP_FLOOR, np.float32), "floor"),
        numpy_helper.from_array((rng.standard_normal((FP_FRAMES, len(LABELS))) * 0.1).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((FP_FRAMES, FP_DIM)).astype(np.float32), "w2"),
    ]
    graph = helper.make_graph(
        nodes, "fake_ast_sampleid_fingerprint",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", window])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", len(LABELS)]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", FP_DIM])],
        inits,
    )
    return _save(graph, path, meta)
