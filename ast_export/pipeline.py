"""The one export-and-verify path that every format's command runs (and ``ast-export verify`` the second half).

load weights -> build + write the artifact (``writer``) -> log wall time and size, print the path on stdout ->
verify it unless told not to -> write the JSON report -> ParityError on any miss.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import click

from ast_export.artifact import ArtifactFormat
from ast_export.errors import ParityError
from ast_export.options import ExportOptions, VerifyOptions
from ast_export.registry import get_format
from ast_export.source import ExportResult, Source, load_source
from ast_export.spec import FP32
from ast_export.verify import VerifyReport, default_report_path, verify_artifact, write_report
from ast_export.writer import export_artifact
from models.hub import is_url, url_basename

logger = logging.getLogger(__name__)

OPTIMIZED_INFIX = ".opt"  # fp32 has no infix; other precisions are ".<precision>"
MB = 1024 * 1024


def default_out(weights: str | os.PathLike, fmt: str | ArtifactFormat, precision: str = FP32,
                optimize: bool = False) -> Path:
    """``<weights stem><precision infix><suffix>`` next to the weights, e.g. ``modelo_audio.int8.onnx``
    (``.opt`` for ``--optimize``); for a URL, in the current folder and named after the URL's file name."""
    fmt = get_format(fmt) if isinstance(fmt, str) else fmt
    base = Path.cwd() / url_basename(str(weights)) if is_url(weights) else Path(weights)
    infix = OPTIMIZED_INFIX if optimize else "" if precision == FP32 else f".{precision}"
    return base.with_name(base.stem + infix + fmt.suffix)


def run_verify(artifact: Path, src: Source, options: VerifyOptions) -> VerifyReport:
    """Verify ``artifact``, write the JSON report, raise ParityError on any miss."""
    start = time.perf_counter()
    result = verify_artifact(artifact, src, options)
    report_path = options.report or default_report_path(artifact)
    write_report(result, report_path)
    failed = [c for c in result.checks if not c.passed]
    logger.info("verify: %d checks, %d failed, %.1f s; report %s", len(result.checks), len(failed),
                time.perf_counter() - start, report_path)
    if failed:
        first = failed[0]
        raise ParityError(f"parity FAILED for {artifact}: {first.runtime} {first.name}"
                          f"{f' batch={first.batch}' if first.batch else ''}"
                          f"{f' {first.kind}' if first.kind else ''}: {first.detail} (report: {report_path})")
    return result


def _log_written(result: ExportResult) -> None:
    what = result.precision + (" optimized" if result.optimized else "")
    logger.info("wrote %s (%s, %s) in %.1f s, %.2f MB", result.path, result.format, what, result.seconds,
                result.size_bytes / MB)
    click.echo(str(result.path))


def export_and_verify(fmt: ArtifactFormat, weights: str, sha256: str | None, out: Path | None,
                      export: ExportOptions, verify: VerifyOptions | None) -> ExportResult:
    """Export ``weights`` as ``fmt`` and, unless ``verify`` is None, verify the result.

    Args:
        fmt: the format record.
        weights: weights path or ``http(s)://`` URL.
        sha256: expected SHA-256 of the weights file, if given.
        out: artifact path; :func:`default_out` when None.
        export: precision, optimisation and the format's own settings.
        verify: verification options; None skips verification (``--no-verify``).

    Raises:
        ExportError, ParityError, ArtifactError, VerifyInputError, WeightsError, HubError: one line each.
    """
    src = load_source(weights, sha256)
    out = out or default_out(weights, fmt, export.precision, export.optimize)
    result = export_artifact(fmt, src, out, export)
    _log_written(result)
    if verify is not None:
        run_verify(result.path, src, verify)
    return result
