"""The ``ast_sampleid`` metadata: one JSON value that travels inside every artifact (DESIGN.md).

The key, the format version and the validation rules are ``serving.contract``'s, so what export writes is what
``ast-serve`` reads. Each format embeds and reads the text its own way (its record in ``registry``: ONNX
``metadata_props``, TorchScript ``_extra_files``, ``.pt2`` extra files); this module builds and parses it.

The calibrated default "no match" threshold of the weights file (``train["threshold"]``, measured at
``train["threshold_far"]``) is copied as ``threshold`` and ``threshold_far``; ``ast-serve identify`` applies it
when ``--threshold`` is not given.

Precision is written as ``precision`` (``fp32``, ``fp16``, ``int8``) plus ``optimized`` (fused attention), and
what the conversion did as ``transform``. Files written before that spelled an optimised graph
``"precision": "fp32-optimized"`` (and the conversion under another key); :func:`artifact_precision` reads both.
"""

from __future__ import annotations

import json
import logging
from importlib import metadata as pkg_metadata
from typing import Any

import torch

from ast_export.errors import ArtifactError
from ast_export.spec import FP32
from models.config import FbankConfig, config_to_dict, window_samples
from serving.contract import FORMAT_VERSION, ModelError, default_hop, parse_metadata

logger = logging.getLogger(__name__)

PACKAGE_NAME = "ast-sampleid"
UNKNOWN_VERSION = "0+unknown"
LEGACY_OPTIMIZED = "fp32-optimized"  # how older files spelled fp32 + optimized


def exporter_version() -> str:
    """Installed version of this package (the exporter), or ``0+unknown`` when run from a bare checkout."""
    try:
        return pkg_metadata.version(PACKAGE_NAME)
    except pkg_metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


def build_metadata(wf: Any, weights_sha256: str, *, artifact_format: str, precision: str = FP32,
                   optimized: bool = False, opset: int | None = None, hop_samples: int | None = None
                   ) -> dict[str, Any]:
    """Assemble the metadata document for a weights file.

    Args:
        wf: a ``models.weights.WeightsFile``.
        weights_sha256: hex digest of the weights file the artifact was exported from.
        artifact_format: the format's registry name (``onnx``, ``torchscript``, ``pt2``, ...).
        precision: one of ``spec.PRECISIONS``.
        optimized: fused attention (``--optimize``).
        opset: ONNX opset (None for other formats).
        hop_samples: default serving hop; ``serving.contract.default_hop`` when None.

    Returns:
        A JSON-serialisable dict.
    """
    fbank: FbankConfig = wf.fbank_config
    window = window_samples(fbank, wf.model_config)
    return {
        "format_version": FORMAT_VERSION,
        "labels": list(wf.labels),
        "sample_rate": fbank.sample_rate,
        "window_samples": window,
        "hop_samples": hop_samples if hop_samples is not None else default_hop(window),
        "fbank_config": config_to_dict(fbank),
        "norm": {"mean": float(wf.norm_mean), "std": float(wf.norm_std)},
        "model_config": config_to_dict(wf.model_config),
        "weights_sha256": weights_sha256,
        "exporter": "ast_export",
        "exporter_version": exporter_version(),
        "torch_version": torch.__version__,
        "format": artifact_format,
        "opset": opset,
        "precision": precision,
        "optimized": optimized,
        **_threshold(wf.train),
    }


def _threshold(train: dict[str, Any]) -> dict[str, float]:
    """The calibrated default "no match" threshold of the weights (``threshold``, ``threshold_far``), when the
    training run stored one (training.calibrate); older weights files have none and serving then has no default."""
    threshold, far = train.get("threshold"), train.get("threshold_far")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (threshold, far))
    if not numbers or not (0.0 < threshold <= 1.0 and 0.0 < far < 1.0):
        return {}
    return {"threshold": float(threshold), "threshold_far": float(far)}


def dumps(meta: dict[str, Any]) -> str:
    """Canonical JSON text of the metadata (sorted keys, so equal metadata gives equal bytes)."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))


def parse(text: str | bytes | None, where: str) -> dict[str, Any]:
    """Validate metadata text by ``serving.contract.parse_metadata``; every field comes back in the dict.

    Raises:
        ArtifactError: ``"<where>: <the contract's one-line reason>"``.
    """
    try:
        return dict(parse_metadata(text).raw)
    except ModelError as err:
        raise ArtifactError(f"{where}: {err}") from err


def artifact_precision(meta: dict[str, Any]) -> tuple[str, bool]:
    """``(precision, optimized)`` of a metadata document, older spellings included."""
    precision = str(meta.get("precision", FP32))
    if precision == LEGACY_OPTIMIZED:
        return FP32, True
    return precision, bool(meta.get("optimized", False))

