"""The one write path of every format: build -> metadata -> atomic save -> :class:`ExportResult`.

A format only says *how* (its record's ``build``, ``write_metadata`` and ``save``); the order, the metadata
document, the timing and the conversion of "cannot write there" into a one-line ExportError live here once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ast_export.artifact import ArtifactFormat, Built
from ast_export.errors import ExportError
from ast_export.metadata import build_metadata, dumps
from ast_export.options import ExportOptions
from ast_export.source import ExportResult, Source, file_size
from serving.contract import one_line

logger = logging.getLogger(__name__)


def write_artifact(fmt: ArtifactFormat, built: Built, src: Source, out: Path, options: ExportOptions,
                   started: float | None = None) -> ExportResult:
    """Embed the metadata into ``built.artifact`` and save it to ``out`` atomically.

    Args:
        fmt: the format record.
        built: what ``fmt.build`` made (its ``metadata`` keys are merged into the document).
        src: the weights the artifact comes from.
        out: the file to write (parent folders are created).
        options: the precision and optimisation it was built with.
        started: ``time.perf_counter()`` when the build began (the reported time includes it).

    Raises:
        ExportError: ``out`` cannot be written (a read-only folder, a full disk, a folder in the way).
    """
    started = time.perf_counter() if started is None else started
    meta = build_metadata(src.wf, src.sha256, artifact_format=fmt.name, precision=options.precision,
                          optimized=options.optimize)
    meta.update(built.metadata)
    fmt.write_metadata(built.artifact, dumps(meta))
    try:
        fmt.save(built.artifact, out)
    except OSError as err:  # the user's to fix: say where and what, no traceback
        raise ExportError(f"{out}: cannot write the artifact ({one_line(err)}); choose another --out or make "
                          "its folder writable") from err
    return ExportResult(out, fmt.name, options.precision, time.perf_counter() - started, file_size(out), meta,
                        dict(built.notes), optimized=options.optimize)


def export_artifact(fmt: ArtifactFormat, src: Source, out: Path, options: ExportOptions) -> ExportResult:
    """Build ``src`` as ``fmt`` at ``options`` and write it to ``out`` (see :func:`write_artifact`)."""
    started = time.perf_counter()
    return write_artifact(fmt, fmt.build(src, options), src, out, options, started)
