"""The model session: loaded once, validated against the exported-graph contract, on the backend that fits.

Contract (DESIGN.md, "Exported graph"): one input ``waveform`` float32 ``[batch, window_samples]``; outputs
``probs`` ``[batch, classes]`` and ``embedding`` ``[batch, dim]``; one JSON value under the metadata key
``ast_sampleid`` holding at least ``format_version`` (1), ``labels``, ``sample_rate``, ``window_samples`` and
``hop_samples``. Anything else is refused with a one-line :class:`ModelError`, whichever backend reads it.

Backends (``backend``; :mod:`serving.backends`): ``ort`` (ONNX Runtime, CPU or CUDA EP), ``openvino``
(OpenVINO on the CPU) or ``auto``: ORT's CUDA EP when a GPU works, else the CPU rule of
:mod:`serving.backends.select` (CPU flags and the export's precision). ``precision``: ``auto`` or one of
``fp32``, ``bf16``, ``fp16``, ``int8``; one a backend or export cannot do is a one-line :class:`ModelError`.
The library default is ``backend="ort"`` at the export's precision (what callers always got); ``ast-serve``
passes ``auto``. Every session logs ONE INFO line naming the provider, the precision and why.

Devices (``device``): ``auto`` tries the CUDA EP when onnxruntime lists it and a GPU device exists, and uses it
if it actually initialises (ORT silently drops a CUDA EP whose libraries or GPU are missing; we check
``session.get_providers()``), otherwise the CPU; ``cuda``: the CUDA EP or a :class:`ModelError` saying why
not; ``cpu``: the CPU. The CUDA EP runs with TF32 off; IO binding is on by default on CUDA
(:mod:`serving.backends.ort`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from serving.backends import BACKENDS, Backend, artifact_precision, check_precision, usable_cores
from serving.backends.ort import (
    CPU_EP,
    CUDA_EP,
    CUDA_OPTIONS,
    NO_CUDA_EP,
    OrtBackend,
    OrtConfig,
    cpu_backend,
    try_cuda,
)
from serving.backends.select import Choice, choose_cpu, cpu_flags, cpu_vendor, openvino_installed
from serving.contract import ModelError, ModelMetadata, kind_mismatch

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
# numpy's BLAS threads in ast-serve: verification's products are small, and an idle OpenBLAS worker spins on the
# core that the model's threads (or a pipeline's other stage) need: identify --index, 60 songs, 2 cores: 69.5x
# real time with OpenBLAS's default threads, 71.9x with one, 96.5x with one and the search pipelined
# (bench/NOTES.md #29).
BLAS_THREADS = 1

__all__ = ["BACKENDS", "CPU_EP", "CUDA_EP", "CUDA_OPTIONS", "DEVICES", "ModelSession", "SessionOptions"]


@dataclass
class SessionOptions:
    """How to build the session.

    Attributes:
        device: ``auto``, ``cpu`` or ``cuda``.
        intra_threads: intra-op (ORT) / inference (OpenVINO) threads; 0 = all cores this process may use.
        inter_threads: ORT inter-op threads; 0 lets ORT choose.
        io_binding: ORT: bind inputs/outputs explicitly; ``None`` means on for CUDA, off for CPU.
        backend: ``ort``, ``openvino`` or ``auto`` (see the module docstring).
        precision: ``auto`` (the export's, or the CPU rule's under ``backend="auto"``), ``fp32``, ``bf16``,
            ``fp16`` or ``int8``.
        spinning: ORT: idle worker threads busy-wait; ``None`` = the measured default (off).
        streams: OpenVINO: concurrent parts each batch is split into (the threads are shared among them).
    """

    device: str = "auto"
    intra_threads: int = 0
    inter_threads: int = 0
    io_binding: bool | None = None
    backend: str = "ort"
    precision: str = "auto"
    spinning: bool | None = None
    streams: int = 1


BATCH_STREAMS = 2  # bench/NOTES.md #20a, #41: as fast as one stream quiet, +17-19 % with a busy core (Zen 1)


def default_streams(latency: bool, threads: int = 0) -> int:
    """OpenVINO streams when ``--streams`` is not given: :data:`BATCH_STREAMS` for batch work over files
    (identify, index, bench), 1 for a latency-bound service (http: a one-window request would get one thread of
    a split), and never more than the threads (``0`` = :func:`usable_cores`)."""
    return 1 if latency else max(1, min(BATCH_STREAMS, threads or usable_cores()))


def _check_options(opts: SessionOptions) -> None:
    if opts.device not in DEVICES:
        raise ModelError(f"unknown device {opts.device!r}; choose one of {', '.join(DEVICES)}")
    if opts.backend not in BACKENDS:
        raise ModelError(f"unknown backend {opts.backend!r}; choose one of {', '.join(BACKENDS)}")
    check_precision(opts.precision)
    if opts.backend == "openvino" and opts.device == "cuda":
        raise ModelError("--backend openvino runs on the CPU; use --backend ort (or auto) for --device cuda")


def _ort_config(opts: SessionOptions) -> OrtConfig:
    return OrtConfig(opts.intra_threads, opts.inter_threads, opts.spinning, opts.io_binding)


def _openvino(path: str, opts: SessionOptions, precision: str, model: object = None) -> Backend:
    from serving.backends.openvino import OpenVinoBackend, OpenVinoConfig

    return OpenVinoBackend(path, OpenVinoConfig(threads=opts.intra_threads, streams=opts.streams), precision, model)


def _ort(path: str, opts: SessionOptions) -> tuple[Backend, str]:
    """ORT on the requested device; returns the backend and the reason for its device."""
    cfg = _ort_config(opts)
    if opts.device == "cpu":
        return cpu_backend(path, cfg, opts.precision), "--device cpu"
    backend, reason = try_cuda(path, cfg, opts.precision)
    if backend is not None:
        return backend, f"--device {opts.device}"
    if opts.device == "cuda":
        hint = "install onnxruntime-gpu or use --device cpu" if reason == NO_CUDA_EP else "use --device cpu or auto"
        raise ModelError(f"--device cuda: {reason}; {hint}")
    return cpu_backend(path, cfg, opts.precision), reason


def _auto_cpu(path: str, opts: SessionOptions, why_not_gpu: str) -> tuple[Backend, str]:
    """The CPU rule: peek at the export with OpenVINO (when installed), choose, build."""
    model, artifact, usable = None, "fp32", openvino_installed()
    if usable:
        try:
            from serving.backends.openvino import model_metadata, read_model

            model = read_model(path)
            artifact = artifact_precision(model_metadata(model))
        except ModelError as err:  # OpenVINO cannot read it: ORT reads it or names the problem itself
            reason = f"{why_not_gpu}; OpenVINO: {err}; ORT as exported"
            return cpu_backend(path, _ort_config(opts), opts.precision), reason
    choice: Choice = choose_cpu(cpu_flags(), artifact, opts.precision, usable, cpu_vendor())
    reason = f"{why_not_gpu}; {choice.reason}" if why_not_gpu else choice.reason
    if choice.backend == "openvino":
        return _openvino(path, opts, choice.precision, model), reason
    return cpu_backend(path, _ort_config(opts), choice.precision), reason


def open_backend(path: str, opts: SessionOptions) -> Backend:
    """The backend ``opts`` asks for, and the one INFO line saying what runs and why."""
    if opts.backend == "ort":
        backend, reason = _ort(path, opts)
    elif opts.backend == "openvino":
        backend, reason = _openvino(path, opts, opts.precision), "--backend openvino"
    elif opts.device == "cpu":
        backend, reason = _auto_cpu(path, opts, "--device cpu")
    else:
        gpu, why_not = try_cuda(path, _ort_config(opts), opts.precision)
        if gpu is None and opts.device == "cuda":
            raise ModelError(f"--device cuda: {why_not}; use --device cpu or auto")
        backend, reason = (gpu, "GPU works") if gpu is not None else _auto_cpu(path, opts, why_not)
    logger.info("using %s (%s, %s) [%s]", backend.provider, backend.name, backend.precision, reason)
    return backend


class ModelSession:
    """One exported ast-sampleid graph on one backend, created once and reused for every batch."""

    def __init__(self, path: str | os.PathLike, options: SessionOptions | None = None) -> None:
        """Load and validate ``path``.

        Args:
            path: the exported ``.onnx`` file.
            options: backend, precision, device, threads and IO binding.

        Raises:
            ModelError: unreadable, unparseable or non-conforming model, an unknown option, a precision the
                backend or export cannot do, or ``device='cuda'`` without CUDA.
        """
        self.path = os.fsdecode(path)
        self.options = options or SessionOptions()
        _check_options(self.options)
        _check_file(self.path)
        self.backend: Backend = open_backend(self.path, self.options)
        self.metadata: ModelMetadata = self.backend.metadata
        self.provider: str = self.backend.provider

    @property
    def labels(self) -> tuple[str, ...]:
        return self.metadata.labels

    @property
    def precision(self) -> str:
        """The compute precision in use (``fp32``, ``bf16``, ``fp16``, ``int8``)."""
        return self.backend.precision

    @property
    def backend_name(self) -> str:
        """``ort`` or ``openvino``."""
        return self.backend.name

    @property
    def io_binding(self) -> bool:
        """Whether ORT binds inputs/outputs explicitly (always False on OpenVINO)."""
        return isinstance(self.backend, OrtBackend) and self.backend.io_binding

    def run(self, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score a batch of windows.

        Args:
            waves: float32 [n, window_samples], mono, in [-1, 1].

        Returns:
            ``(probs [n, classes], embedding [n, dim])`` as float32 numpy arrays.
        """
        waves = np.ascontiguousarray(waves, dtype=np.float32)  # [n, W]
        if waves.ndim != 2 or waves.shape[1] != self.metadata.window_samples:
            raise ValueError(f"expected [n, {self.metadata.window_samples}] windows, got {list(waves.shape)}")
        return self.backend.run(waves)


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise ModelError(f"model file not found: {path} (export one with `ast-export onnx --weights W`)")
    wrong_kind = kind_mismatch(path, ("onnx",))  # a weights file, checkpoint or folder: say what takes it
    if wrong_kind:
        raise ModelError(wrong_kind)
    if not os.access(path, os.R_OK):
        raise ModelError(f"model file is not readable: {path}")
    if os.path.getsize(path) == 0:
        raise ModelError(f"model file is empty: {path}")


def limit_blas_threads() -> None:
    """Run numpy's BLAS on :data:`BLAS_THREADS` threads from now on (``ast-serve`` calls it once, at start)."""
    threadpool_limits(limits=BLAS_THREADS, user_api="blas")
