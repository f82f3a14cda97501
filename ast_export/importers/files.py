"""Files and labels for ``ast-export import``: transformers checkpoint folders, torch ``.pth`` files, AudioSet
label CSVs, and the feature extractor's norm stats. Split from ``remap`` (which holds the remapping)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import torch

from ast_export.errors import CheckpointImportError
from models import AUDIOSET_MEAN, AUDIOSET_STD
from serving.contract import kind_mismatch, one_line

logger = logging.getLogger(__name__)

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HF_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
HF_PREPROCESSOR = "preprocessor_config.json"
SAMPLE_RATE = 16000
MAX_DETAIL_CHARS = 200


def read_json(path: Path) -> Any:
    """A checkpoint's JSON file; unreadable or malformed files are one :class:`CheckpointImportError`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointImportError(f"{path}: cannot read it as JSON ({one_line(exc)})") from exc


def read_label_csv(path: str | Path) -> list[str]:
    """``display_name`` column of an AudioSet-style ``index,mid,display_name`` CSV, in index order."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CheckpointImportError(f"{path}: cannot read the label CSV ({one_line(exc)})") from exc
    if not rows or "display_name" not in rows[0] or "index" not in rows[0]:
        raise CheckpointImportError(f"{path}: expected a CSV with columns index,mid,display_name")
    try:
        by_index = {int(row["index"]): row["display_name"].strip() for row in rows}
    except ValueError as exc:
        raise CheckpointImportError(f"{path}: non-integer index ({exc})") from exc
    if sorted(by_index) != list(range(len(by_index))):
        raise CheckpointImportError(f"{path}: indices must be 0..{len(by_index) - 1} without gaps")
    return [by_index[i] for i in range(len(by_index))]


def unique_labels(names: list[str]) -> list[str]:
    """``names`` with duplicates disambiguated as ``"name [index]"`` (weights files need unique labels)."""
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    out = [name if seen[name] == 1 else f"{name} [{i}]" for i, name in enumerate(names)]
    if len(set(out)) != len(out):
        raise CheckpointImportError("label names are not unique even after adding indices")
    return out


def torch_load_dict(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a dict, with one-line errors (an export, a checkpoint or a weights
    file of ours is named as such, with the command that takes it)."""
    wrong_kind = kind_mismatch(path, ("official_ast", "torch_pickle", "hf_folder"))
    if wrong_kind:
        raise CheckpointImportError(wrong_kind)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one error for the user
        raise CheckpointImportError(f"{path}: cannot read checkpoint ({' '.join(str(exc).split())[:MAX_DETAIL_CHARS]})") from exc
    if not isinstance(data, dict):
        raise CheckpointImportError(f"{path}: expected a state dict, found {type(data).__name__}")
    return data


def _load_tensor_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix != ".safetensors":
        return torch_load_dict(path)
    try:
        from safetensors.torch import load_file
    except ImportError as exc:  # a test extra today; see the README
        raise CheckpointImportError("reading .safetensors needs the 'safetensors' package "
                                    "(pip install safetensors)") from exc
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for corrupt files
        raise CheckpointImportError(f"{path}: cannot read safetensors ({one_line(exc)})") from exc


def read_hf_tensors(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """All tensors of a transformers checkpoint folder (single file or sharded index) and the file hashed."""
    for name in HF_WEIGHT_FILES:
        if (folder / name).is_file():
            return _load_tensor_file(folder / name), folder / name
    for name in HF_INDEX_FILES:
        if (folder / name).is_file():
            weight_map = read_json(folder / name)["weight_map"]
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                state.update(_load_tensor_file(folder / shard))
            return state, folder / name
    raise CheckpointImportError(f"{folder}: no {' or '.join(HF_WEIGHT_FILES)} found")


def hf_norm_stats(folder: Path) -> tuple[float, float]:
    """Mean/std of the feature extractor (``preprocessor_config.json``), else the AudioSet defaults."""
    path = folder / HF_PREPROCESSOR
    if not path.is_file():
        logger.info("no %s; using the AudioSet norm stats", HF_PREPROCESSOR)
        return AUDIOSET_MEAN, AUDIOSET_STD
    pre = read_json(path)
    if int(pre.get("sampling_rate", SAMPLE_RATE)) != SAMPLE_RATE:
        raise CheckpointImportError(f"{path}: sampling_rate {pre['sampling_rate']} (only {SAMPLE_RATE} Hz)")
    if not pre.get("do_normalize", True):
        return 0.0, 0.5  # (x - 0) / (2 * 0.5) is the identity
    return float(pre.get("mean", AUDIOSET_MEAN)), float(pre.get("std", AUDIOSET_STD))
