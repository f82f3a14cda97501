"""Uniform callables over the eager model and each artifact kind: windows [B, S] -> {output name: array}.

ORT CPU always; ORT CUDA (TF32 off, so fp32 parity holds) only when the CUDA EP is built in, a GPU is present,
and the session really lands on it. Torch formats build theirs with :func:`torch_runner` (CPU, as the eager
reference runs); each format's record names its runner factory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from ast_export.errors import ArtifactError
from serving.contract import INPUT_NAME, OUTPUT_NAMES, one_line

logger = logging.getLogger(__name__)

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
ORT_LOG_ERRORS_ONLY = 3


@dataclass
class Runner:
    """A named way to compute the graph's outputs; ``input_names``/``output_names`` as the artifact declares."""

    name: str
    input_names: list[str]
    output_names: list[str]
    fn: Callable[[np.ndarray], list[np.ndarray]]

    def __call__(self, windows: np.ndarray) -> dict[str, np.ndarray]:
        values = self.fn(np.ascontiguousarray(windows, dtype=np.float32))
        return dict(zip(self.output_names, values, strict=False))


def eager_runner(model: torch.nn.Module) -> Runner:
    """The reference: the eager ``ScoringModel`` in fp32 on CPU."""
    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            probs, emb = model(torch.from_numpy(x))  # [B, C], [B, D]
        return [probs.numpy(), emb.numpy()]
    return Runner("eager", [INPUT_NAME], list(OUTPUT_NAMES), run)


def _ort_session(path: Path, providers: list, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = ORT_LOG_ERRORS_ONLY
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


def _ort_runner(name: str, sess: ort.InferenceSession) -> Runner:
    inputs = [i.name for i in sess.get_inputs()]
    outputs = [o.name for o in sess.get_outputs()]

    def run(x: np.ndarray) -> list[np.ndarray]:
        return sess.run(None, {inputs[0]: x})
    return Runner(name, inputs, outputs, run)


def gpu_present() -> bool:
    """A CUDA device is visible (torch's view is enough: the ORT CUDA EP needs the same driver)."""
    try:
        return torch.cuda.is_available() and torch.cuda.device_count() > 0
    except RuntimeError:
        return False


def onnx_runners(path: Path, threads: int = 0) -> tuple[list[Runner], list[str]]:
    """ORT CPU, plus ORT CUDA with TF32 off when possible; returns (runners, skip notes)."""
    try:
        runners = [_ort_runner("ort-cpu", _ort_session(path, [CPU_EP], threads))]
    except Exception as err:  # ORT raises its own Fail/InvalidGraph types
        raise ArtifactError(f"{path}: onnxruntime cannot load it ({one_line(err)})") from err
    skipped = []
    if CUDA_EP not in ort.get_available_providers() or not gpu_present():
        skipped.append("ort-cuda: no CUDA EP or no GPU present")
        logger.info("skipped %s", skipped[-1])
        return runners, skipped
    try:
        sess = _ort_session(path, [(CUDA_EP, {"use_tf32": 0}), CPU_EP], threads)
    except Exception as err:  # a broken CUDA install surfaces only here
        skipped.append(f"ort-cuda: session creation failed ({one_line(err)})")
        logger.info("skipped %s", skipped[-1])
        return runners, skipped
    if sess.get_providers()[0] != CUDA_EP:
        skipped.append(f"ort-cuda: session fell back to {sess.get_providers()[0]}")
    else:
        runners.append(_ort_runner("ort-cuda", sess))
    for note in skipped:
        logger.info("skipped %s", note)
    return runners, skipped


def torch_runner(name: str, module: Callable, out_names: list[str]) -> Runner:
    """A runner over a loaded torch callable that returns the outputs as a tuple (CPU, no grad)."""
    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            outs = module(torch.from_numpy(x))
        return [o.numpy() for o in outs]
    return Runner(name, [INPUT_NAME], out_names, run)
