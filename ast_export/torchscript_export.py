"""TorchScript writer: ``torch.jit.trace`` with ``check_trace`` on a second batch size, metadata in
``_extra_files``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from ast_export.errors import ExportError
from ast_export.metadata import build_metadata, torchscript_extra_files
from ast_export.source import ExportResult, Source, file_size

logger = logging.getLogger(__name__)

# A batch size other than the trace's, so a batch dimension baked in as a constant is caught by check_trace.
CHECK_BATCH = 3
# check_trace compares outputs of the trace and of eager; it only guards against divergent control flow,
# parity is verify.py's job.
CHECK_TOLERANCE = 1e-5


def export_torchscript(src: Source, out: Path) -> ExportResult:
    """Trace ``src.model`` and save it to ``out`` with the metadata as an extra file."""
    start = time.perf_counter()
    example = src.spec.example_input()  # [2, S]
    checks = [(src.spec.example_input(batch=CHECK_BATCH, seed=1),)]  # [3, S]
    try:
        with torch.no_grad():
            traced = torch.jit.trace(src.model, (example,), check_trace=True, check_inputs=checks,
                                     check_tolerance=CHECK_TOLERANCE, strict=False)
    except torch.jit.TracingCheckError as err:
        raise ExportError(f"TorchScript trace does not generalise across batch sizes: "
                          f"{str(err).splitlines()[0]}") from err
    meta = build_metadata(src.wf, src.sha256, artifact_format="torchscript")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(traced, str(out), _extra_files=torchscript_extra_files(meta))
    seconds = time.perf_counter() - start
    return ExportResult(out, "torchscript", "fp32", seconds, file_size(out), meta)
