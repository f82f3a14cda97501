"""TorchScript: ``torch.jit.trace`` with ``check_trace`` on a second batch size, metadata in ``_extra_files``,
run back with ``torch.jit.load`` on CPU; and its format record."""

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

# A batch size other than the trace's, so a batch dimension baked in as a constant is caught by check_trace.
CHECK_BATCH = 3
# check_trace compares outputs of the trace and of eager; it only guards against divergent control flow,
# parity is verify.py's job.
CHECK_TOLERANCE = 1e-5


def build_torchscript(src: Source, options: ExportOptions) -> Built:
    """Trace ``src.model`` (fp32; the format declares no other precision)."""
    example = src.spec.example_input()  # [2, S]
    checks = [(src.spec.example_input(batch=CHECK_BATCH, seed=1),)]  # [3, S]
    try:
        with torch.no_grad():
            traced = torch.jit.trace(src.model, (example,), check_trace=True, check_inputs=checks,
                                     check_tolerance=CHECK_TOLERANCE, strict=False)
    except torch.jit.TracingCheckError as err:
        raise ExportError(f"TorchScript trace does not generalise across batch sizes: {one_line(err)}") from err
    return Built(ExtraFilesArtifact(traced))


def save_torchscript(artifact: ExtraFilesArtifact, out: Path) -> None:
    """``torch.jit.save`` with the extra files, atomically."""
    atomic_write(out, lambda handle: torch.jit.save(artifact.program, handle, _extra_files=artifact.extra_files))


def read_torchscript_metadata_text(path: Path) -> str | None:
    """The metadata text of a TorchScript file, via ``torch.jit.load(_extra_files=...)``."""
    return read_extra_file_metadata(
        path, lambda p, extra: torch.jit.load(p, map_location="cpu", _extra_files=extra), "TorchScript")


def torchscript_runner(path: Path) -> Runner:
    """``torch.jit.load`` on CPU. TorchScript has no output names: the tuple's order is the contract."""
    module = torch.jit.load(str(path), map_location="cpu").eval()
    return torch_runner("torchscript", module, list(OUTPUT_NAMES))


def torchscript_runners(path: Path, threads: int) -> tuple[list[Runner], list[str]]:
    """The one TorchScript runner."""
    return single_runner(path, torchscript_runner, "torchscript")


FORMAT = ArtifactFormat(
    name="torchscript",
    suffixes=(".ts", ".pt"),
    summary="Export the scoring graph with torch.jit.trace (check_trace on a second batch size).",
    build=build_torchscript,
    write_metadata=write_extra_file_metadata,
    save=save_torchscript,
    read_metadata=read_torchscript_metadata_text,
    runners=torchscript_runners,
    tolerances={FP32: TORCH_SAME_KERNELS},
)
