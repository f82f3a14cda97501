"""The ``ast_sampleid`` metadata: one JSON value that travels inside every artifact (DESIGN.md).

Writers/readers per format: ONNX ``metadata_props``, TorchScript ``_extra_files`` and ``.pt2`` extra files,
all under the same key, so ``ast-serve`` (ONNX) and any torch consumer read the same document.
"""

from __future__ import annotations

import json
import logging
from importlib import metadata as pkg_metadata
from pathlib import Path
from typing import Any

import onnx
import torch

from ast_export.errors import ArtifactError
from models.config import FbankConfig, config_to_dict, window_samples

logger = logging.getLogger(__name__)

METADATA_KEY = "ast_sampleid"
FORMAT_VERSION = 1
PACKAGE_NAME = "ast-sampleid"
UNKNOWN_VERSION = "0+unknown"


def exporter_version() -> str:
    """Installed version of this package (the exporter), or ``0+unknown`` when run from a bare checkout."""
    try:
        return pkg_metadata.version(PACKAGE_NAME)
    except pkg_metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


def build_metadata(wf: Any, weights_sha256: str, *, artifact_format: str, precision: str = "fp32",
                   opset: int | None = None, hop_samples: int | None = None) -> dict[str, Any]:
    """Assemble the metadata document for a weights file.

    Args:
        wf: a ``models.weights.WeightsFile``.
        weights_sha256: hex digest of the weights file the artifact was exported from.
        artifact_format: ``onnx``, ``torchscript`` or ``pt2``.
        precision: ``fp32``, ``fp16``, ``int8`` or ``fp32-optimized``.
        opset: ONNX opset (None for torch formats).
        hop_samples: default serving hop; half a window when None.

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
        "hop_samples": hop_samples if hop_samples is not None else window // 2,
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
    }


def dumps(meta: dict[str, Any]) -> str:
    """Canonical JSON text of the metadata (sorted keys, so equal metadata gives equal bytes)."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))


def _loads(text: str | bytes, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{where}: '{METADATA_KEY}' metadata is not valid JSON ({err})") from err
    if not isinstance(value, dict) or value.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{where}: '{METADATA_KEY}' metadata has unknown format_version")
    return value


def set_onnx_metadata(model: onnx.ModelProto, meta: dict[str, Any]) -> None:
    """Put ``meta`` into ``model.metadata_props`` under :data:`METADATA_KEY`, replacing an older value."""
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in kept}, METADATA_KEY: dumps(meta)})


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """Metadata of an ONNX file (weights are not loaded)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError / OSError variants
        raise ArtifactError(f"{path}: not a readable ONNX file ({err})") from err
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return _loads(prop.value, str(path))
    raise ArtifactError(f"{path}: no '{METADATA_KEY}' metadata; re-export with ast-export")


def torchscript_extra_files(meta: dict[str, Any]) -> dict[str, str]:
    """``_extra_files`` for ``torch.jit.save``."""
    return {METADATA_KEY: dumps(meta)}


def read_torchscript_metadata(path: str | Path) -> dict[str, Any]:
    """Metadata of a TorchScript file, via ``torch.jit.load(_extra_files=...)``."""
    extra = {METADATA_KEY: ""}
    try:
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as err:  # torch raises RuntimeError / ValueError variants
        raise ArtifactError(f"{path}: not a readable TorchScript file ({err})") from err
    if not extra[METADATA_KEY]:
        raise ArtifactError(f"{path}: no '{METADATA_KEY}' metadata; re-export with ast-export")
    return _loads(extra[METADATA_KEY], str(path))


def pt2_extra_files(meta: dict[str, Any]) -> dict[str, str]:
    """``extra_files`` for ``torch.export.save``."""
    return {METADATA_KEY: dumps(meta)}


def read_pt2_metadata(path: str | Path) -> dict[str, Any]:
    """Metadata of a ``.pt2`` file, via ``torch.export.load(extra_files=...)``."""
    extra = {METADATA_KEY: ""}
    try:
        torch.export.load(str(path), extra_files=extra)
    except Exception as err:  # torch raises RuntimeError / zip errors
        raise ArtifactError(f"{path}: not a readable .pt2 file ({err})") from err
    if not extra[METADATA_KEY]:
        raise ArtifactError(f"{path}: no '{METADATA_KEY}' metadata; re-export with ast-export")
    return _loads(extra[METADATA_KEY], str(path))


def artifact_format(path: str | Path) -> str:
    """Format of an artifact from its suffix: ``onnx``, ``torchscript`` or ``pt2``."""
    suffix = Path(path).suffix.lower()
    formats = {".onnx": "onnx", ".ts": "torchscript", ".pt": "torchscript", ".pt2": "pt2"}
    if suffix not in formats:
        raise ArtifactError(f"{path}: unknown artifact suffix {suffix!r}; expected .onnx, .ts or .pt2")
    return formats[suffix]


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Metadata of any artifact, dispatched on its suffix."""
    readers = {"onnx": read_onnx_metadata, "torchscript": read_torchscript_metadata, "pt2": read_pt2_metadata}
    return readers[artifact_format(path)](path)
