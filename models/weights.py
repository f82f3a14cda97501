"""The weights file (``modelo_audio.pth``): safe to load, atomic to write.

On disk it is a ``torch.save`` of a dict holding only tensors and plain Python values, so
``torch.load(weights_only=True)`` reads it without running code::

    {"format": "ast-sampleid/1",
     "model_config": {...ASTConfig fields...}, "fbank_config": {...FbankConfig fields...},
     "labels": [str, ...],                      # index = class
     "norm": {"mean": float, "std": float},    # applied as (x - mean) / (2 * std)
     "state_dict": {name: Tensor},             # the AST's (the frontend has no weights)
     "train": {...}}                           # metrics, data fingerprint, versions (plain values)
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.config import ASTConfig, FbankConfig, ast_config_from_dict, config_to_dict, fbank_config_from_dict
from models.hub import file_sha256
from models.scoring import ScoringModel
from serving.contract import atomic_write, kind_mismatch, one_line

logger = logging.getLogger(__name__)

WEIGHTS_FORMAT = "ast-sampleid/1"
REQUIRED_KEYS = ("format", "model_config", "fbank_config", "labels", "norm", "state_dict", "train")
# The base types' own conversions: they give the plain type even when a subclass overrides __str__ & co.
PLAIN_SCALARS = {str: str.__str__, int: int.__int__, float: float.__float__}


class WeightsError(ValueError):
    """A weights file is missing, truncated, tampered with, or not an ast-sampleid weights file."""


@dataclass
class WeightsFile:
    """In-memory form of a weights file (``format`` is ``WEIGHTS_FORMAT``)."""

    format: str
    model_config: ASTConfig
    fbank_config: FbankConfig
    labels: list[str]
    norm_mean: float
    norm_std: float
    state_dict: dict[str, torch.Tensor]
    train: dict[str, Any] = field(default_factory=dict)


def save_weights(path: str | os.PathLike, wf: WeightsFile) -> Path:
    """Write ``wf`` to ``path`` atomically (temp file in the same folder, fsync, ``os.replace``).

    Raises:
        ValueError: if ``wf`` holds values that ``torch.load(weights_only=True)`` could not read back, or
            labels that do not match the classifier.
    """
    path = Path(path)
    payload = _to_payload(wf)
    atomic_write(path, lambda handle: torch.save(payload, handle))
    logger.info("wrote %s (%d classes)", path, len(wf.labels))
    return path


def load_weights(path: str | os.PathLike) -> WeightsFile:
    """Read and validate a weights file without executing any code from it.

    Raises:
        WeightsError: one-line ``"<path>: <problem>"`` for missing, truncated, tampered or foreign files.
    """
    path = Path(path)
    wrong_kind = kind_mismatch(path, ("weights", "torch_pickle"))  # torch_pickle: the checks below name it
    if wrong_kind:
        raise WeightsError(wrong_kind)
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"{path}: refused: it holds objects that could run code on load "
            f"({_unpickler_reason(exc)}); re-save it with plain values only"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any failure to read is a bad weights file
        raise WeightsError(f"{path}: cannot read weights file ({one_line(exc)})") from exc
    try:
        return _from_payload(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: {one_line(exc)}") from exc


def build_scoring_model(wf: WeightsFile) -> ScoringModel:
    """The eval-mode :class:`ScoringModel` of ``wf`` with its weights loaded (CPU, float32).

    Raises:
        WeightsError: if the state dict does not fit the configured architecture.
    """
    model = ScoringModel(wf.fbank_config, wf.model_config, wf.norm_mean, wf.norm_std)
    try:
        model.ast.load_state_dict(wf.state_dict, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"state_dict does not fit the model config: {one_line(exc)}") from exc
    return model.eval()


def weights_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file's bytes (recorded in export metadata)."""
    return file_sha256(path)


def _to_payload(wf: WeightsFile) -> dict[str, Any]:
    if wf.format != WEIGHTS_FORMAT:
        raise ValueError(f"unsupported format {wf.format!r}; this version writes {WEIGHTS_FORMAT!r}")
    _check_labels(wf.labels, wf.model_config)
    payload = {
        "format": wf.format,
        "model_config": config_to_dict(wf.model_config),
        "fbank_config": config_to_dict(wf.fbank_config),
        "labels": [str(label) for label in wf.labels],
        "norm": {"mean": float(wf.norm_mean), "std": float(wf.norm_std)},
        "state_dict": {str(k): v.detach().cpu().contiguous() for k, v in wf.state_dict.items()},
    }
    for key in ("model_config", "fbank_config"):
        payload[key] = _to_plain(payload[key], key)
    payload["train"] = _to_plain(wf.train, "train")
    return payload


def _from_payload(data: Any) -> WeightsFile:
    if not isinstance(data, dict):
        raise TypeError(f"expected a dict, found {type(data).__name__}")
    if data.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"unknown format {data.get('format')!r}; expected {WEIGHTS_FORMAT!r}")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise KeyError(f"missing keys: {', '.join(missing)}")
    for key in ("model_config", "fbank_config", "norm", "state_dict", "train"):
        if not isinstance(data[key], dict):
            raise TypeError(f"{key} must be a dict, found {type(data[key]).__name__}")
    model_config = ast_config_from_dict(data["model_config"])
    labels = data["labels"]
    _check_labels(labels, model_config)
    state_dict = data["state_dict"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise TypeError("state_dict must map names to tensors")
    mean, std = data["norm"].get("mean"), data["norm"].get("std")
    if not (isinstance(mean, (int, float)) and isinstance(std, (int, float)) and std > 0):
        raise ValueError(f"norm must hold numeric 'mean' and positive 'std'; got {data['norm']!r}")
    return WeightsFile(
        format=data["format"],
        model_config=model_config,
        fbank_config=fbank_config_from_dict(data["fbank_config"]),
        labels=list(labels),
        norm_mean=float(mean),
        norm_std=float(std),
        state_dict=state_dict,
        train=data["train"],
    )


def _check_labels(labels: Any, cfg: ASTConfig) -> None:
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise TypeError("labels must be a list of strings")
    if len(labels) != cfg.num_classes:
        raise ValueError(f"{len(labels)} labels but model_config.num_classes is {cfg.num_classes}")
    if len(set(labels)) != len(labels):
        raise ValueError("labels must be unique")


def _to_plain(value: Any, where: str) -> Any:
    """A copy of ``value`` that ``torch.load(weights_only=True)`` can read back.

    Subclasses of the plain types become the plain type (``torch.__version__`` is a ``TorchVersion``, numpy's
    ``float64`` a ``float``, an ``IntEnum`` an ``int``): the unpickler refuses their classes even though
    ``isinstance`` accepts them. Anything else (Paths, numpy arrays, objects) is a ``ValueError``.
    """
    if value is None or type(value) is bool or isinstance(value, torch.Tensor):
        return value
    for plain, convert in PLAIN_SCALARS.items():  # bool (an int) was handled above
        if isinstance(value, plain):
            return value if type(value) is plain else convert(value)
    if isinstance(value, (list, tuple)):
        items = [_to_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {_plain_key(key, where): _to_plain(item, f"{where}.{key}") for key, item in value.items()}
    raise ValueError(
        f"{where} holds a {type(value).__name__}; use plain Python values (str, int, float, "
        "bool, None, list, dict) or tensors"
    )


def _plain_key(key: Any, where: str) -> str | int:
    if isinstance(key, (str, int)):
        return _to_plain(key, where)
    raise ValueError(f"{where}: key {key!r} is not a str or int")


def _unpickler_reason(exc: BaseException) -> str:
    """The useful sentence of torch's long weights_only refusal (e.g. "Unsupported global: ...")."""
    found = re.search(r"WeightsUnpickler error: ([^.]*)", " ".join(str(exc).split()))
    return found.group(1).strip() if found else one_line(exc)
