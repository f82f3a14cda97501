"""ONNX Runtime backend: CPU or CUDA EP, explicit threads, spinning and IO binding.

The CUDA EP runs with TF32 off (``use_tf32=0``) so results match the fp32 parity tolerances. IO binding (input
bound from numpy as an ``OrtValue`` on the session's device, outputs to CPU) is on by default on CUDA and can be
forced on CPU so the same code path is tested without a GPU.

Spinning: ORT's intra-op worker threads busy-wait between ops by default
(``session.intra_op.allow_spinning=1``). On a machine whose cores are shared that burns the cycles another
process needs and makes ORT itself slower; see ``bench/NOTES.md`` (issue 14) for the figures behind
:data:`DEFAULT_SPINNING`.

Precision: ORT runs the graph as exported; ``--precision`` must name the artifact's own precision (or
``auto``). bf16 has no ORT path here (OpenVINO has one).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from serving.backends import TensorSpec, artifact_precision, check_io
from serving.contract import INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, ModelError, one_line, parse_metadata

logger = logging.getLogger(__name__)

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
CUDA_OPTIONS = {"use_tf32": "0"}  # TF32 breaks the fp32 parity tolerances
ORT_QUIET = 4  # fatal only: ORT's own stderr lines about a missing CUDA would otherwise leak out
ORT_DEFAULT = 2  # warning
SPINNING_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")
DEFAULT_SPINNING = False  # bench/NOTES.md #17: off was faster in every cell measured, quiet and one busy core
NO_CUDA_EP = "this onnxruntime build has no CUDA execution provider"
CUDA_INIT_FAILED = "CUDA EP failed to initialise: no GPU, or CUDA/cuDNN libraries missing"
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/proc/driver/nvidia")
NO_GPU_DEVICE = "no NVIDIA GPU device found"

__all__ = ["CPU_EP", "CUDA_EP", "OrtBackend", "OrtConfig", "cpu_backend", "cuda_unavailable_reason", "ort_precision",
           "try_cuda"]


@dataclass
class OrtConfig:
    """ONNX Runtime knobs.

    Attributes:
        intra_threads: intra-op threads; 0 lets ORT choose (one per core).
        inter_threads: inter-op threads; 0 lets ORT choose.
        spinning: let idle intra-/inter-op threads busy-wait; ``None`` means :data:`DEFAULT_SPINNING`.
        io_binding: bind inputs/outputs explicitly; ``None`` means on for CUDA, off for CPU.
    """

    intra_threads: int = 0
    inter_threads: int = 0
    spinning: bool | None = None
    io_binding: bool | None = None


def cuda_unavailable_reason() -> str | None:
    """Why the CUDA EP cannot work here without trying it (``None``: it might; build a session to know)."""
    if CUDA_EP not in ort.get_available_providers():
        return NO_CUDA_EP
    if not any(os.path.exists(p) for p in GPU_DEVICE_FILES):
        return NO_GPU_DEVICE
    return None


def ort_precision(artifact: str, requested: str) -> str:
    """The precision ORT will run at, or a one-line :class:`ModelError` when it cannot do ``requested``."""
    if requested in ("auto", artifact):
        return artifact
    if requested == "bf16":
        raise ModelError("--precision bf16: ONNX Runtime has no bf16 path for this graph; "
                         "use --backend openvino (or --precision auto)")
    raise ModelError(f"--precision {requested}: the model is a {artifact} export and ONNX Runtime runs it as "
                     f"exported; pass a {requested} export (ast-export onnx --precision {requested}) "
                     "or use --precision auto")


def _session_options(cfg: OrtConfig, quiet: bool) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = max(0, cfg.intra_threads)
    so.inter_op_num_threads = max(0, cfg.inter_threads)
    spinning = DEFAULT_SPINNING if cfg.spinning is None else cfg.spinning
    for key in SPINNING_KEYS:
        so.add_session_config_entry(key, "1" if spinning else "0")
    if quiet:
        so.log_severity_level = ORT_QUIET
    return so


def _specs(args: list) -> list[TensorSpec]:
    return [TensorSpec(a.name, a.type, list(a.shape)) for a in args]


class OrtBackend:
    """An ORT session over one exported graph, created once and reused for every batch."""

    name = "ort"

    def __init__(self, path: str, providers: list, cfg: OrtConfig, precision: str = "auto",
                 quiet: bool = False) -> None:
        """Load and validate ``path`` with ``providers`` (ORT may silently drop a CUDA EP: see ``provider``).

        Raises:
            ModelError: unreadable or non-conforming model, or a precision ORT cannot run it at.
        """
        self.path, self.config = path, cfg
        self.session = _build(path, providers, cfg, quiet)
        self.provider = self.session.get_providers()[0]
        meta_map = self.session.get_modelmeta().custom_metadata_map
        self.metadata = parse_metadata(meta_map.get(METADATA_KEY))
        check_io(_specs(self.session.get_inputs()), _specs(self.session.get_outputs()), self.metadata)
        self.precision = ort_precision(artifact_precision(self.metadata), precision)
        self.io_binding = (self.provider == CUDA_EP) if cfg.io_binding is None else cfg.io_binding
        self._device_type = "cuda" if self.provider == CUDA_EP else "cpu"

    def run(self, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score contiguous float32 windows ``[n, W]`` -> ``(probs [n, C], embedding [n, D])``."""
        if not self.io_binding:
            probs, emb = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: waves})
            return probs, emb
        binding = self.session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(waves, self._device_type, 0)
        binding.bind_ortvalue_input(INPUT_NAME, value)
        for name in OUTPUT_NAMES:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        probs, emb = binding.copy_outputs_to_cpu()
        return probs, emb


def _build(path: str, providers: list, cfg: OrtConfig, quiet: bool) -> ort.InferenceSession:
    if quiet:
        ort.set_default_logger_severity(ORT_QUIET)
    try:
        return ort.InferenceSession(path, _session_options(cfg, quiet), providers=providers)
    except Exception as err:  # ORT raises several pybind types (Fail, InvalidProtobuf, ...)
        raise ModelError(f"cannot load model {path}: {one_line(err)}") from err
    finally:
        if quiet:
            ort.set_default_logger_severity(ORT_DEFAULT)


def try_cuda(path: str, cfg: OrtConfig, precision: str) -> tuple[OrtBackend | None, str]:
    """An ORT backend on the CUDA EP, or ``(None, why not)``; ORT's own CUDA complaints stay quiet."""
    reason = cuda_unavailable_reason()
    if reason is not None:
        return None, reason
    try:
        backend = OrtBackend(path, [(CUDA_EP, CUDA_OPTIONS), CPU_EP], cfg, precision,
                             quiet=not logger.isEnabledFor(logging.DEBUG))
    except ModelError as err:  # the CPU attempt that follows reports a model problem on its own
        return None, str(err)
    if backend.provider == CUDA_EP:
        return backend, ""
    return None, CUDA_INIT_FAILED


def cpu_backend(path: str, cfg: OrtConfig, precision: str) -> OrtBackend:
    """An ORT backend on the CPU EP."""
    return OrtBackend(path, [CPU_EP], cfg, precision)

