"""``.pt2``: ``torch.export.export`` with a dynamic batch ``Dim``, saved by ``torch.export.save`` with the
metadata in ``extra_files`` (the TorchScript successor; run back with ``torch.export.load``); and its record."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ast_export.artifact import (
    ArtifactFormat,
    Built,
    ExtraFilesArtifact,
    read_extra_file_metadata,
    single_runner,
    write_extra_file_metadata,
)
from ast_export.errors import ExportError
from ast_export.options import ExportOptions
from ast_export.runners import Runner, torch_runner
from ast_export.source import Source
from ast_export.spec import FP32, TORCH_SAME_KERNELS
from serving.contract import OUTPUT_NAMES, atomic_write, one_line

logger = logging.getLogger(__name__)


def build_pt2(src: Source, options: ExportOptions) -> Built:
    """``torch.export`` of ``src.model`` with the batch dynamic (fp32; the format declares no other)."""
    try:
        program = torch.export.export(src.model, (src.spec.example_input(),),
                                      dynamic_shapes=src.spec.torch_dynamic_shapes(), strict=False)
    except Exception as err:  # torch.export raises UserError / constraint violations of many kinds
        raise ExportError(f"torch.export failed: {type(err).__name__}: {one_line(err)}") from err
    return Built(ExtraFilesArtifact(program))


def save_pt2(artifact: ExtraFilesArtifact, out: Path) -> None:
    """``torch.export.save`` with the extra files, atomically."""
    atomic_write(out, lambda handle: torch.export.save(artifact.program, handle, extra_files=artifact.extra_files))


def read_pt2_metadata_text(path: Path) -> str | None:
    """The metadata text of a ``.pt2`` file, via ``torch.export.load(extra_files=...)``."""
    return read_extra_file_metadata(path, lambda p, extra: torch.export.load(p, extra_files=extra), ".pt2")


def pt2_runner(path: Path) -> Runner:
    """``torch.export.load`` -> ``.module()``; output names as the graph signature records them."""
    program = torch.export.load(str(path))
    names = [spec.arg.name for spec in program.graph_signature.output_specs]
    runner = torch_runner("pt2", program.module(), list(OUTPUT_NAMES))
    runner.output_names = list(OUTPUT_NAMES) if len(names) == len(OUTPUT_NAMES) else names
    return runner


def pt2_runners(path: Path, threads: int) -> tuple[list[Runner], list[str]]:
    """The one ``.pt2`` runner."""
    return single_runner(path, pt2_runner, "pt2")


FORMAT = ArtifactFormat(
    name="pt2",
    suffixes=(".pt2",),
    summary="Export the scoring graph with torch.export (dynamic batch) to a .pt2 file.",
    build=build_pt2,
    write_metadata=write_extra_file_metadata,
    save=save_pt2,
    read_metadata=read_pt2_metadata_text,
    runners=pt2_runners,
    tolerances={FP32: TORCH_SAME_KERNELS},
)
