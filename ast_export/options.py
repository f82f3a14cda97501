"""The options that travel through an export and its verification, as dataclasses (no loose parameters)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ast_export.spec import FP32

MAX_PARITY_WINDOWS = 16  # audio (or test-signal) windows in the parity pool, plus the edge signals
CALIBRATION_WINDOWS = 128  # windows the int8 quantiser calibrates its activation ranges on
ALL_CORES = 0  # onnxruntime's intra-op default


@dataclass(frozen=True)
class CalibrationOptions:
    """Where ``--precision int8`` takes its calibration windows from (``verify_inputs.calibration_windows``).

    Attributes:
        audio: audio files (the export's ``--audio``).
        manifest: manifest whose ``train`` split (else ``test``) gives the songs (the export's ``--manifest``;
            default: data/demo when present).
        max_windows: at most this many windows, spread evenly over the songs.
    """

    audio: tuple[Path, ...] = ()
    manifest: Path | None = None
    max_windows: int = CALIBRATION_WINDOWS


@dataclass(frozen=True)
class ExportOptions:
    """How to write an artifact.

    Attributes:
        precision: one of ``spec.PRECISIONS`` that the format declares.
        optimize: fused attention (fp32 only, formats that declare an optimised bar).
        settings: the format's own options by parameter name (e.g. ``{"opset": 18}`` for ONNX).
        calibration: the int8 calibration windows' source (other precisions ignore it).
    """

    precision: str = FP32
    optimize: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)


@dataclass(frozen=True)
class VerifyOptions:
    """What verification compares on and where its report goes.

    Attributes:
        audio: audio files for the parity pool (default: the manifest's test songs, else test signals).
        manifest: manifest whose ``test`` split gives labelled held-out songs (default: data/demo when present).
        report: JSON report path (default: ``<artifact>.verify.json``).
        max_windows: audio windows in the parity pool (the edge signals are always added).
        threads: onnxruntime intra-op threads (0 = all cores).
    """

    audio: tuple[Path, ...] = ()
    manifest: Path | None = None
    report: Path | None = None
    max_windows: int = MAX_PARITY_WINDOWS
    threads: int = ALL_CORES
