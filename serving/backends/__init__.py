"""Inference backends: one small protocol, so the rest of ``serving`` never knows which runtime scores windows.

A backend reads the exported ``.onnx`` (the only hand-off from export; no re-export per runtime), validates it
against the exported-graph contract with :func:`check_io` and :func:`serving.contract.parse_metadata`, and
scores batches of windows ``[n, window_samples]`` float32 into ``(probs, embedding)``.

- :mod:`serving.backends.ort`: ONNX Runtime, CPU or CUDA EP (the reference path: parity-tested at fp32).
- :mod:`serving.backends.openvino`: OpenVINO on the CPU, the same graph compiled with an inference precision
  hint (``f32``, ``bf16``, ``f16``); ``int8`` only from an int8 artifact.
- :mod:`serving.backends.select`: the ``auto`` rule (CPU flags -> backend and precision).

Which backend runs is decided by :class:`serving.session.ModelSession`; callers keep using it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from serving.contract import INPUT_NAME, OUTPUT_NAMES, ModelError, ModelMetadata

BACKENDS = ("auto", "ort", "openvino")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
FLOAT_TENSOR = "tensor(float)"  # ORT's spelling of float32; OpenVINO's types are mapped onto it
LEGACY_OPTIMIZED = "fp32-optimized"  # older exports wrote an optimised fp32 graph's precision this way


class Backend(Protocol):
    """What :class:`serving.session.ModelSession` needs from a runtime.

    Attributes:
        name: ``ort`` or ``openvino``.
        provider: what actually runs, for logs and reports (``CPUExecutionProvider``, ``OpenVINO CPU``, ...).
        precision: the compute precision in use (``fp32``, ``bf16``, ``fp16``, ``int8``).
        metadata: the validated ``ast_sampleid`` metadata.
    """

    name: str
    provider: str
    precision: str
    metadata: ModelMetadata

    def run(self, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score contiguous float32 windows ``[n, window_samples]``; return ``(probs [n, C], embedding [n, D])``."""
        ...


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output as the runtime reports it (``shape`` items: int, or a name/None if dynamic)."""

    name: str
    type: str
    shape: Sequence[object]


def check_io(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], meta: ModelMetadata) -> None:
    """Refuse a graph whose IO does not match the contract and its metadata, in one line (every backend)."""
    by_name = {o.name: o for o in outputs}
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise ModelError(f"model inputs are {[i.name for i in inputs]}, expected ['{INPUT_NAME}']")
    missing = [name for name in OUTPUT_NAMES if name not in by_name]
    if missing:
        raise ModelError(f"model outputs {sorted(by_name)} lack {missing}; expected {list(OUTPUT_NAMES)}")
    tensors = [("input", inputs[0])] + [("output", by_name[n]) for n in OUTPUT_NAMES]
    for kind, arg in tensors:
        if arg.type != FLOAT_TENSOR or len(arg.shape) != 2:
            raise ModelError(f"{kind} '{arg.name}' is {arg.type} {list(arg.shape)}, expected float32 [batch, n]")
    width = inputs[0].shape[1]
    if isinstance(width, int) and width != meta.window_samples:
        raise ModelError(f"input 'waveform' has {width} samples but metadata says {meta.window_samples}")
    classes = by_name["probs"].shape[1]
    if isinstance(classes, int) and classes != len(meta.labels):
        raise ModelError(f"output 'probs' has {classes} classes but metadata lists {len(meta.labels)} labels")


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def artifact_precision(meta: ModelMetadata) -> str:
    """The precision the artifact was exported at (``fp32`` when the metadata does not say)."""
    precision = str(meta.raw.get("precision", "fp32"))
    return "fp32" if precision == LEGACY_OPTIMIZED else precision


def check_precision(requested: str) -> None:
    """Refuse an unknown ``--precision`` value in one line."""
    if requested not in PRECISIONS:
        raise ModelError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
