"""OpenVINO backend: the same exported ``.onnx``, compiled for the CPU with an inference precision hint.

No re-export: ``ov.Core().read_model`` reads the ONNX graph, and its ``metadata_props`` arrive in the model's
``rt_info`` under ``framework``; the metadata and IO are validated exactly as on the ORT path
(:func:`serving.contract.parse_metadata`, :func:`serving.backends.check_io`).

Precision (``INFERENCE_PRECISION_HINT``): an fp32 (or fp16) export compiles at ``fp32`` (``f32``), ``bf16``
(AMX / AVX512-BF16) or ``fp16`` (``f16``), each only where the CPU plugin lists the capability; the graph's
inputs and outputs stay float32. ``int8`` means an int8 export (``ast-export onnx --precision int8``: NNCF's
static QDQ graph, whose QuantizeLinear/DequantizeLinear pairs OpenVINO folds into int8 kernels) run as
quantised, the rest in f32; a float export is never quantised behind the user's back.

At bf16/fp16 the **frontend stays f32**, as ``ast-export`` keeps it for its fp16/int8 graphs: the graph is cut
at the input of its first ``Convolution`` (the patch embedding; everything upstream is the Kaldi frontend) into
two compiled models, the frontend at f32 and the encoder at the hint. The hint on the whole graph runs the DFT
and mel products in bf16 and flips decisions: tiny, 16 music clips, top-1 agreement with ORT fp32 50 % (max
|dp| 0.52) whole-graph vs 100 % (2.3e-2) cut; fp16 87.5 % vs 100 % (1.8e-3). A graph without a Convolution
(the test fake) compiles whole.

Threads: one stream with ``INFERENCE_NUM_THREADS`` = the cores this process may use (or ``--threads``), the
latency hint (serving runs one batch at a time), and CPU pinning off: on shared cores a pinned thread cannot
move away from a busy core (bench/NOTES.md #17b). The batch dimension is kept dynamic.

One infer request is reused under a lock (OpenVINO requests are not thread-safe); outputs are copied out of
its buffers before the lock is released.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.backends import FLOAT_TENSOR, TensorSpec, artifact_precision, check_io, usable_cores
from serving.contract import (
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAMES,
    ModelError,
    ModelMetadata,
    one_line,
    parse_metadata,
)

DEVICE = "CPU"
PROVIDER = "OpenVINO CPU"
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}  # int8: the non-quantised ops run f32
CAPABILITY = {"bf16": "BF16", "fp16": "FP16"}  # OPTIMIZATION_CAPABILITIES entries a precision needs
RT_INFO_PATH = ["framework", METADATA_KEY]  # where the ONNX frontend puts metadata_props
FLOAT_EXPORTS = ("fp32", "fp16")

__all__ = ["OpenVinoBackend", "OpenVinoConfig", "capabilities", "openvino_precision", "read_model"]


@dataclass
class OpenVinoConfig:
    """OpenVINO CPU knobs.

    Attributes:
        threads: inference threads; 0 = the cores this process may use.
        streams: parallel inference streams (1: every core works on the one batch in flight).
        pinning: pin inference threads to cores (off: shared machines, see the module docstring).
    """

    threads: int = 0
    streams: int = 1
    pinning: bool = False


def _ov() -> Any:
    try:
        import openvino
    except ImportError as err:
        raise ModelError(f"--backend openvino: openvino is not installed ({one_line(err)}); "
                         "pip install openvino, or use --backend ort") from err
    return openvino


_CORE: Any = None


def core() -> Any:
    """One ``ov.Core`` per process (it holds the loaded plugins)."""
    global _CORE
    if _CORE is None:
        _CORE = _ov().Core()
    return _CORE


def capabilities() -> frozenset[str]:
    """The CPU plugin's ``OPTIMIZATION_CAPABILITIES`` (``FP32``, ``BF16``, ``FP16``, ``INT8``, ...)."""
    return frozenset(core().get_property(DEVICE, "OPTIMIZATION_CAPABILITIES"))


def read_model(path: str) -> Any:
    """Read the ONNX file into an ``ov.Model``; any failure is one line."""
    try:
        return core().read_model(path)
    except Exception as err:  # OpenVINO raises RuntimeError / GeneralFailure with multi-line text
        raise ModelError(f"cannot load model {path}: {one_line(err)}") from err


def model_metadata(model: Any) -> ModelMetadata:
    """The validated ``ast_sampleid`` metadata of a read model."""
    text = model.get_rt_info(RT_INFO_PATH).astype(str) if model.has_rt_info(RT_INFO_PATH) else None
    return parse_metadata(text)


def openvino_precision(artifact: str, requested: str, caps: frozenset[str]) -> str:
    """The precision OpenVINO will compile at, or a one-line :class:`ModelError`."""
    if artifact == "int8":
        if requested in ("auto", "int8"):
            return "int8"
        raise ModelError(f"--precision {requested}: the model is an int8 export; pass the fp32 export for "
                         f"{requested}, or use --precision int8")
    if artifact not in FLOAT_EXPORTS:
        raise ModelError(f"the model's precision {artifact!r} is not one OpenVINO serving knows; use --backend ort")
    if requested == "auto":
        requested = "bf16" if CAPABILITY["bf16"] in caps else "fp32"
    if requested == "int8":
        raise ModelError(f"--precision int8 on OpenVINO needs an int8 export (ast-export onnx --precision int8); "
                         f"the model is {artifact}")
    needed = CAPABILITY.get(requested)
    if needed is not None and needed not in caps:
        raise ModelError(f"--precision {requested}: this CPU has no {needed} support in OpenVINO "
                         f"(capabilities: {', '.join(sorted(caps))}); use --precision fp32 or auto")
    return requested


def _spec(port: Any, wanted: tuple[str, ...]) -> TensorSpec:
    names = port.get_names()
    name = next((n for n in wanted if n in names), port.get_any_name())
    etype = port.get_element_type()
    kind = FLOAT_TENSOR if etype.get_type_name() == "f32" else f"tensor({etype.get_type_name()})"
    shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
    return TensorSpec(name, kind, shape)


def _threads(cfg: OpenVinoConfig) -> int:
    return cfg.threads if cfg.threads > 0 else usable_cores()


def compile_config(cfg: OpenVinoConfig, precision: str) -> dict[str, Any]:
    """The ``compile_model`` properties for ``cfg`` at ``precision``."""
    return {
        "INFERENCE_PRECISION_HINT": HINTS[precision],
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": cfg.streams,
        "INFERENCE_NUM_THREADS": _threads(cfg),
        "ENABLE_CPU_PINNING": cfg.pinning,
    }


class OpenVinoBackend:
    """An OpenVINO CPU compiled model over one exported graph, compiled once, reused for every batch."""

    name = "openvino"
    provider = PROVIDER

    def __init__(self, path: str, cfg: OpenVinoConfig | None = None, precision: str = "auto",
                 model: Any = None) -> None:
        """Read (unless ``model`` is given), validate and compile ``path``.

        Raises:
            ModelError: unreadable or non-conforming model, or a precision this CPU / export cannot do.
        """
        self.path, self.config = path, cfg or OpenVinoConfig()
        model = read_model(path) if model is None else model
        self.metadata = model_metadata(model)
        inputs = [_spec(p, (INPUT_NAME,)) for p in model.inputs]
        outputs = [_spec(p, OUTPUT_NAMES) for p in model.outputs]
        check_io(inputs, outputs, self.metadata)
        self.precision = openvino_precision(artifact_precision(self.metadata), precision, capabilities())
        model.reshape({model.inputs[0]: [-1, self.metadata.window_samples]})  # dynamic batch, fixed window
        parts = split_frontend(model) if self.precision in ("bf16", "fp16") else None
        self._front = None if parts is None else _compile(parts[0], self.config, "fp32", path)
        self.compiled = _compile(model if parts is None else parts[1], self.config, self.precision, path)
        by_name = {spec.name: port for spec, port in zip(outputs, self.compiled.outputs, strict=True)}
        self._outputs = [by_name[name] for name in OUTPUT_NAMES]
        self._requests = [(None if self._front is None else self._front.create_infer_request(),
                           self.compiled.create_infer_request()) for _ in range(max(1, self.config.streams))]
        self._lock = threading.Lock()

    def run(self, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score contiguous float32 windows ``[n, W]`` -> ``(probs [n, C], embedding [n, D])``.

        With several streams the batch is split into one contiguous part per stream, run concurrently.
        """
        with self._lock:
            parts = np.array_split(waves, min(len(self._requests), max(1, waves.shape[0])))  # [n_i, W] each
            pairs = self._requests[:len(parts)]
            for (front, _), part in zip(pairs, parts, strict=True):
                if front is not None:  # f32 features first, then the encoder at the hint
                    front.start_async({0: part})
            for (front, encoder), part in zip(pairs, parts, strict=True):
                inputs: dict[int, np.ndarray] = {0: part}
                if front is not None:
                    front.wait()
                    inputs[1] = front.get_output_tensor(0).data
                encoder.start_async(inputs)
            outs = []
            for _, encoder in pairs:
                encoder.wait()
                outs.append([np.array(encoder.get_tensor(port).data, dtype=np.float32, copy=True)
                             for port in self._outputs])
        probs, emb = (np.concatenate(col) if len(outs) > 1 else col[0] for col in zip(*outs, strict=True))
        return probs, emb


def _compile(model: Any, cfg: OpenVinoConfig, precision: str, path: str) -> Any:
    try:
        return core().compile_model(model, DEVICE, compile_config(cfg, precision))
    except Exception as err:  # an op the CPU plugin cannot compile, out of memory, ...
        raise ModelError(f"OpenVINO cannot compile {path}: {one_line(err)}") from err


def split_frontend(model: Any) -> tuple[Any, Any] | None:
    """``(frontend, encoder)`` cut at the first Convolution's input, or ``None`` without one.

    The frontend maps ``waveform`` to the features; the encoder takes ``(waveform, features)`` (the waveform
    too, in case shape ops downstream read it) and has the original outputs, in order.
    """
    ov = _ov()
    front_src = _first_conv_input(model)
    if front_src is None:
        return None
    enc_model = model.clone()  # before the frontend model shares model's nodes
    frontend = ov.Model([front_src], model.get_parameters(), "frontend")
    enc_src = _first_conv_input(enc_model)
    features = ov.opset13.parameter(enc_src.get_partial_shape(), enc_src.get_element_type(), name="features")
    for target in list(enc_src.get_target_inputs()):
        if target.get_node().get_type_name() == "Convolution":
            target.replace_source_output(features.output(0))
    encoder = ov.Model(enc_model.get_results(), [*enc_model.get_parameters(), features], "encoder")
    return frontend, encoder


def _first_conv_input(model: Any) -> Any:
    conv = next((op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"), None)
    return None if conv is None else conv.input_value(0)
