"""GEMM rates on this machine, at AST-base's MLP shape: the floor a variant's time is compared against.

One [tokens, 768] x [768, 3072] product (AST-base fc1 at batch 1: 1214 tokens), timed in torch fp32 / bf16,
ORT fp32 (MLAS) and ORT dynamic int8 (one-MatMul graphs), all on the same threads. The AST-base floor of a
runtime is then ~261 GFLOP / its rate.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TOKENS, DIM, HIDDEN = 1214, 768, 3072
AST_BASE_GFLOP = 261.0
CALLS = 8
ORT_IR_VERSION = 10


def _rate(fn: Callable[[], object], calls: int = CALLS) -> float:
    """GFLOP/s of ``fn`` (median of ``calls`` after one warm-up)."""
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 2.0 * TOKENS * DIM * HIDDEN / statistics.median(times) / 1e9


def _onnx_matmul(path: Path, weight: np.ndarray) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [TOKENS, DIM])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [TOKENS, HIDDEN])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = ORT_IR_VERSION  # onnx 1.23 writes IR 14 by default; ORT 1.31 reads up to 13
    onnx.save(model, str(path))


def _ort_rates(x: np.ndarray, weight: np.ndarray, threads: int) -> dict[str, float]:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    rates = {}
    with tempfile.TemporaryDirectory(prefix="roof-") as tmp:
        fp32, int8 = Path(tmp) / "mm.onnx", Path(tmp) / "mm8.onnx"
        _onnx_matmul(fp32, weight)
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
        for name, path in (("ort_fp32", fp32), ("ort_int8_dynamic", int8)):
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            rates[name] = _rate(lambda s=sess: s.run(None, {"x": x}))
    return rates


def gemm_rates(threads: int) -> dict[str, Any]:
    """GFLOP/s per runtime/precision and the implied AST-base floor in s/clip."""
    import torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((TOKENS, DIM), dtype=np.float32)
    weight = (0.02 * rng.standard_normal((DIM, HIDDEN))).astype(np.float32)
    tx, tw = torch.from_numpy(x), torch.from_numpy(weight.T.copy())
    rates = {}
    with torch.inference_mode():
        rates["torch_fp32"] = _rate(lambda: torch.nn.functional.linear(tx, tw))
        bx, bw = tx.bfloat16(), tw.bfloat16()
        rates["torch_bf16"] = _rate(lambda: torch.nn.functional.linear(bx, bw))
    rates.update(_ort_rates(x, weight, threads))
    return {
        "shape": [TOKENS, DIM, HIDDEN],
        "threads": threads,
        "gflop_per_s": {k: round(v, 1) for k, v in rates.items()},
        "ast_base_floor_s_per_clip": {k: round(AST_BASE_GFLOP / v, 3) for k, v in rates.items()},
    }
