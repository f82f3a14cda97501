"""``.pt2`` writer: ``torch.export.export`` with a dynamic batch ``Dim``, saved by ``torch.export.save`` with
the metadata in ``extra_files`` (the TorchScript successor; load with ``torch.export.load``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from ast_export.errors import ExportError
from ast_export.metadata import build_metadata, pt2_extra_files
from ast_export.source import ExportResult, Source, file_size

logger = logging.getLogger(__name__)


def export_pt2(src: Source, out: Path) -> ExportResult:
    """Export ``src.model`` with ``torch.export`` (batch dynamic) and save it to ``out``."""
    start = time.perf_counter()
    try:
        program = torch.export.export(src.model, (src.spec.example_input(),),
                                      dynamic_shapes=src.spec.torch_dynamic_shapes(), strict=False)
    except Exception as err:  # torch.export raises UserError / constraint violations of many kinds
        raise ExportError(f"torch.export failed: {type(err).__name__}: {str(err).splitlines()[0]}") from err
    meta = build_metadata(src.wf, src.sha256, artifact_format="pt2")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(out), extra_files=pt2_extra_files(meta))
    seconds = time.perf_counter() - start
    return ExportResult(out, "pt2", "fp32", seconds, file_size(out), meta)
