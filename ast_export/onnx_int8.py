"""``--precision int8``: a static, calibrated int8 QDQ graph made by NNCF's post-training quantisation.

NNCF (ONNX backend, ``ModelType.TRANSFORMER``, SmoothQuant included) runs the fp32 graph on calibration
windows, fixes every activation's int8 range from what it saw, and inserts QuantizeLinear/DequantizeLinear
pairs around the encoder's MatMuls (per-channel int8 weights). The frontend (everything upstream of the
patch-embedding Conv, ``onnx_precision.frontend_node_names``) is an ignored scope and stays fp32: its power
spectrum spans ~1e-10..1e6 before the log. Both ORT (CPU, VNNI) and OpenVINO read the QDQ graph and run int8
kernels. On a 2-core AMD EPYC (Zen 5), AST-base batch 1: 408 ms/clip in ORT, 398 in OpenVINO, top-1
agreement with fp32 100 % on 32 music-like clips (ORT's dynamic quantisation, the earlier path: 365 ms at
96.9 %).

Every layer's weights keep 7 bits (NNCF's ``OverflowFix.ENABLE``, ORT's ``reduce_range``): a CPU without VNNI
(AVX2 or AVX-512 only) multiplies u8 x s8 pairs with ``vpmaddubsw``, whose int16 sums saturate on full-range
weights. NNCF's default fixes only the first layer: on a 2-core AMD EPYC Zen 1 (AVX2, no VNNI) ORT's top-1
agreement with fp32 was 17.5 % of 40 windows, and 100 % with every layer fixed (bench/NOTES.md #40). The artifact
runs wherever the user scores, so the fix is unconditional.

Calibration windows (:func:`calibration_for`): up to ``options.CALIBRATION_WINDOWS`` windows of real audio
(``--audio``, else the ``train`` split of ``--manifest`` or data/demo), from ``verify_inputs`` (the one place
that turns the user's audio into windows); without real audio the deterministic signal songs, with one
WARNING. The count and the source go into the metadata's ``transform``.

``nncf`` comes with the ``[export]`` extra; without it the export fails in one line naming the fix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import onnx

from ast_export.errors import ExportError
from ast_export.onnx_precision import TransformInfo, frontend_node_names
from ast_export.options import CalibrationOptions
from ast_export.source import Source
from ast_export.verify_inputs import SIGNAL_KIND, Geometry, calibration_windows
from serving.contract import INPUT_NAME, default_hop, one_line

logger = logging.getLogger(__name__)

QUANTIZER = "nncf-static"
NNCF_LOGGER = "nncf"
# NNCF imports torch's cpp_extension, which warns "No CUDA runtime is found" on CPU machines: not ours to say.
CPP_EXTENSION_LOGGER = "torch.utils.cpp_extension"
INSTALL_HINT = "pip install '.[export]'"


@dataclass(frozen=True)
class Calibration:
    """The windows int8 ranges are calibrated on, and where they came from (for the metadata)."""

    windows: np.ndarray  # [N, S] float32
    source: str


def import_nncf() -> ModuleType:
    """The ``nncf`` module, or an ExportError that names the fix."""
    try:
        with _quiet_cpp_extension():
            import nncf
    except ImportError as err:
        raise ExportError(f"--precision int8 needs NNCF, which is not installed ({one_line(err)}); "
                          f"install it with: {INSTALL_HINT}") from err
    return nncf


@contextlib.contextmanager
def _quiet_cpp_extension() -> Iterator[None]:
    """torch's cpp_extension logger at ERROR while NNCF imports (or lazily imports) its torch backend."""
    noisy = logging.getLogger(CPP_EXTENSION_LOGGER)
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        yield
    finally:
        noisy.setLevel(level)


def calibration_for(src: Source, options: CalibrationOptions) -> Calibration:
    """The calibration windows for ``src``'s model (see the module docstring); WARNING on test signals."""
    window = src.spec.window_samples
    geo = Geometry(src.wf.fbank_config.sample_rate, window, default_hop(window))
    windows, source, kind = calibration_windows(geo, list(src.wf.labels), options.audio, options.manifest,
                                                options.max_windows)  # [N, S]
    if kind == SIGNAL_KIND:
        logger.warning("int8 calibration used %d synthetic test-signal windows (no --audio, no --manifest): "
                       "give --manifest (or --audio) for better int8", len(windows))
    else:
        logger.info("int8 calibration: %d windows of %s", len(windows), source)
    return Calibration(windows.astype(np.float32), source)


@contextlib.contextmanager
def _nncf_to_stderr() -> Iterator[None]:
    """NNCF logs to stdout at INFO and draws progress bars there; stdout carries only results, so both go to
    stderr (the bars not at all with ``ast-export -q``), NNCF's INFO lines only with ``ast-export -v``."""
    nncf_logger = logging.getLogger(NNCF_LOGGER)
    saved = nncf_logger.level, [(h, h.level, getattr(h, "stream", None)) for h in nncf_logger.handlers]
    level = logging.INFO if logger.isEnabledFor(logging.DEBUG) else logging.WARNING
    nncf_logger.setLevel(level)
    for handler, _, stream in saved[1]:
        handler.setLevel(level)
        if stream is not None:
            handler.setStream(sys.stderr)  # type: ignore[attr-defined]
    try:
        with contextlib.ExitStack() as stack:
            bars = sys.stderr if logger.isEnabledFor(logging.INFO) else stack.enter_context(open(os.devnull, "w"))
            stack.enter_context(contextlib.redirect_stdout(bars))
            stack.enter_context(_quiet_cpp_extension())
            yield
    finally:
        nncf_logger.setLevel(saved[0])
        for handler, old_level, stream in saved[1]:
            handler.setLevel(old_level)
            if stream is not None:
                handler.setStream(stream)  # type: ignore[attr-defined]


def _advanced(nncf: ModuleType) -> object:
    """7-bit weights in every layer, so that CPUs without VNNI do not saturate (module docstring)."""
    params = nncf.quantization.advanced_parameters
    return params.AdvancedQuantizationParameters(overflow_fix=params.OverflowFix.ENABLE)


def to_int8(model: onnx.ModelProto, calibration: Calibration) -> tuple[onnx.ModelProto, TransformInfo]:
    """Static int8 QDQ graph of the encoder, calibrated on ``calibration``; the frontend stays fp32.

    Raises:
        ExportError: NNCF is not installed, there are no calibration windows, or quantisation fails.
    """
    nncf = import_nncf()
    if len(calibration.windows) == 0:
        raise ExportError("int8 calibration has no windows; give --manifest or --audio")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    frontend = frontend_node_names(model)  # also names every node: the ignored scope addresses nodes by name
    dataset = nncf.Dataset([{INPUT_NAME: window[None]} for window in calibration.windows])  # items [1, S]
    try:
        with _nncf_to_stderr():
            quantized = nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER,
                                      subset_size=len(calibration.windows),
                                      ignored_scope=nncf.IgnoredScope(names=frontend, validate=False),
                                      advanced_parameters=_advanced(nncf))
    except Exception as err:  # NNCF raises assorted errors on graphs it cannot handle
        raise ExportError(f"NNCF int8 quantisation failed: {type(err).__name__}: {one_line(err)}") from err
    logger.info("int8: NNCF static quantisation on %d windows of %s; %d frontend nodes kept fp32",
                len(calibration.windows), calibration.source, len(frontend))
    return quantized, TransformInfo("int8", False, len(frontend), quantizer=QUANTIZER,
                                    calibration_windows=len(calibration.windows),
                                    calibration_source=calibration.source)
