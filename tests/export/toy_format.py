"""A toy export format, registered by the tests only: the scoring model's tensors in a numpy ``.npz``, with the
metadata as one more array; run back by rebuilding the model from the metadata's configs.

It is what README "Adding an export format" shows: one module defining ``FORMAT``, plus one registry line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ast_export.artifact import ArtifactFormat, Built
from ast_export.options import ExportOptions
from ast_export.runners import Runner, eager_runner
from ast_export.source import Source
from ast_export.spec import FP32, TORCH_SAME_KERNELS
from models.config import ast_config_from_dict, fbank_config_from_dict
from models.scoring import ScoringModel
from serving.contract import METADATA_KEY, atomic_write


def build(src: Source, options: ExportOptions) -> Built:
    return Built({name: t.detach().numpy() for name, t in src.model.state_dict().items()})


def write_metadata(arrays: dict[str, np.ndarray], text: str) -> None:
    arrays[METADATA_KEY] = np.array(text)


def save(arrays: dict[str, np.ndarray], out: Path) -> None:
    atomic_write(out, lambda handle: np.savez(handle, **arrays))


def read_metadata(path: Path) -> str | None:
    with np.load(path) as npz:
        return str(npz[METADATA_KEY]) if METADATA_KEY in npz.files else None


def runners(path: Path, threads: int) -> tuple[list[Runner], list[str]]:
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(str(arrays.pop(METADATA_KEY)))
    model = ScoringModel(fbank_config_from_dict(meta["fbank_config"]), ast_config_from_dict(meta["model_config"]),
                         meta["norm"]["mean"], meta["norm"]["std"])
    model.load_state_dict({name: torch.from_numpy(a) for name, a in arrays.items()})
    runner = eager_runner(model.eval())
    runner.name = "npz"
    return [runner], []


FORMAT = ArtifactFormat(
    name="npz", suffixes=(".npz",), summary="Toy: the scoring model's tensors in a numpy .npz.",
    build=build, write_metadata=write_metadata, save=save, read_metadata=read_metadata, runners=runners,
    tolerances={FP32: TORCH_SAME_KERNELS},
)
