"""The ONNX Runtime session: loaded once, validated against the exported-graph contract, explicit providers.

Contract (DESIGN.md, "Exported graph"): one input ``waveform`` float32 ``[batch, window_samples]``; outputs
``probs`` ``[batch, classes]`` and ``embedding`` ``[batch, dim]``; one JSON value under the metadata key
``ast_sampleid`` holding at least ``format_version`` (1), ``labels``, ``sample_rate``, ``window_samples`` and
``hop_samples``. Anything else is refused with a one-line :class:`ModelError`.

Providers (``device``):

- ``auto``: the CUDA EP when onnxruntime lists it *and* it actually initialises (ORT silently drops a CUDA EP
  whose libraries or GPU are missing; we check ``session.get_providers()``), otherwise the CPU EP. One INFO
  line names the provider in use and, on fallback, why.
- ``cuda``: the CUDA EP or a :class:`ModelError` saying why not.
- ``cpu``: the CPU EP.

The CUDA EP runs with TF32 off (``use_tf32=0``) so results match the fp32 parity tolerances. IO binding (input
bound from numpy as an ``OrtValue`` on the session's device, outputs to CPU) is on by default on CUDA and can be
forced on CPU (``io_binding=True``) so the same code path is tested without a GPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from serving.contract import (
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAMES,
    ModelError,
    ModelMetadata,
    one_line,
    parse_metadata,
)

logger = logging.getLogger(__name__)

FLOAT_TENSOR = "tensor(float)"
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
CUDA_OPTIONS = {"use_tf32": "0"}  # TF32 breaks the fp32 parity tolerances
ORT_QUIET = 4  # fatal only: ORT's own stderr lines about a missing CUDA would otherwise leak out
ORT_DEFAULT = 2  # warning
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class SessionOptions:
    """How to build the session.

    Attributes:
        device: ``auto``, ``cpu`` or ``cuda``.
        intra_threads: ORT intra-op threads; 0 lets ORT choose (all cores).
        inter_threads: ORT inter-op threads; 0 lets ORT choose.
        io_binding: bind inputs/outputs explicitly; ``None`` means on for CUDA, off for CPU.
    """

    device: str = "auto"
    intra_threads: int = 0
    inter_threads: int = 0
    io_binding: bool | None = None


def _check_io(sess: ort.InferenceSession, meta: ModelMetadata) -> None:
    inputs, outputs = sess.get_inputs(), {o.name: o for o in sess.get_outputs()}
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise ModelError(f"model inputs are {[i.name for i in inputs]}, expected ['{INPUT_NAME}']")
    missing = [name for name in OUTPUT_NAMES if name not in outputs]
    if missing:
        raise ModelError(f"model outputs {sorted(outputs)} lack {missing}; expected {list(OUTPUT_NAMES)}")
    tensors = [("input", inputs[0])] + [("output", outputs[n]) for n in OUTPUT_NAMES]
    for kind, arg in tensors:
        if arg.type != FLOAT_TENSOR or len(arg.shape) != 2:
            raise ModelError(f"{kind} '{arg.name}' is {arg.type} {arg.shape}, expected float32 [batch, n]")
    width = inputs[0].shape[1]
    if isinstance(width, int) and width != meta.window_samples:
        raise ModelError(f"input 'waveform' has {width} samples but metadata says {meta.window_samples}")
    classes = outputs["probs"].shape[1]
    if isinstance(classes, int) and classes != len(meta.labels):
        raise ModelError(f"output 'probs' has {classes} classes but metadata lists {len(meta.labels)} labels")


def _session_options(opts: SessionOptions, quiet: bool) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = max(0, opts.intra_threads)
    so.inter_op_num_threads = max(0, opts.inter_threads)
    if quiet:
        so.log_severity_level = ORT_QUIET
    return so


class ModelSession:
    """An ORT session over one exported ast-sampleid graph, created once and reused for every batch."""

    def __init__(self, path: str | os.PathLike, options: SessionOptions | None = None) -> None:
        """Load and validate ``path``.

        Args:
            path: the exported ``.onnx`` file.
            options: providers, threads and IO binding.

        Raises:
            ModelError: unreadable, unparseable or non-conforming model, or ``device='cuda'`` without CUDA.
        """
        self.path = os.fsdecode(path)
        self.options = options or SessionOptions()
        if self.options.device not in DEVICES:
            raise ModelError(f"unknown device {self.options.device!r}; choose one of {', '.join(DEVICES)}")
        _check_file(self.path)
        self.session = self._create()
        self.provider = self.session.get_providers()[0]
        meta_map = self.session.get_modelmeta().custom_metadata_map
        self.metadata = parse_metadata(meta_map.get(METADATA_KEY))
        _check_io(self.session, self.metadata)
        binding = self.options.io_binding
        self.io_binding = (self.provider == CUDA_EP) if binding is None else binding
        self._device_type = "cuda" if self.provider == CUDA_EP else "cpu"

    def _create(self) -> ort.InferenceSession:
        device, available = self.options.device, ort.get_available_providers()
        if device == "cpu":
            return self._build([CPU_EP])
        if CUDA_EP not in available:
            reason = "this onnxruntime build has no CUDA execution provider"
            if device == "cuda":
                raise ModelError(f"--device cuda: {reason}; install onnxruntime-gpu or use --device cpu")
            logger.info("using %s (%s)", CPU_EP, reason)
            return self._build([CPU_EP])
        try:
            sess = self._build([(CUDA_EP, CUDA_OPTIONS), CPU_EP], quiet=not logger.isEnabledFor(logging.DEBUG))
            reason = "CUDA EP failed to initialise: no GPU, or CUDA/cuDNN libraries missing"
            if sess.get_providers()[0] == CUDA_EP:
                logger.info("using %s", CUDA_EP)
                return sess
        except ModelError as err:
            reason = str(err)
        if device == "cuda":
            raise ModelError(f"--device cuda: {reason}; use --device cpu or auto")
        logger.info("using %s (%s)", CPU_EP, reason)
        return self._build([CPU_EP])

    def _build(self, providers: list, quiet: bool = False) -> ort.InferenceSession:
        if quiet:
            ort.set_default_logger_severity(ORT_QUIET)
        try:
            return ort.InferenceSession(self.path, _session_options(self.options, quiet), providers=providers)
        except Exception as err:  # ORT raises several pybind types (Fail, InvalidProtobuf, ...)
            raise ModelError(f"cannot load model {self.path}: {one_line(err)}") from err
        finally:
            if quiet:
                ort.set_default_logger_severity(ORT_DEFAULT)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.metadata.labels

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


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise ModelError(f"model file not found: {path} (export one with `ast-export onnx --weights W`)")
    if os.path.isdir(path):
        raise ModelError(f"model path is a directory: {path}")
    if not os.access(path, os.R_OK):
        raise ModelError(f"model file is not readable: {path}")
    if os.path.getsize(path) == 0:
        raise ModelError(f"model file is empty: {path}")
