"""``ast-export`` subcommands, generated from the format registry: one export command per format, and ``verify``.

Each export writes the artifact, logs its wall time and size, prints its path on stdout, then verifies it
(unless ``--no-verify``) and exits 1 when parity fails. Errors are one line on stderr: exit 1 for a bad file, a
failed download or a failed export/verification, 2 for usage errors such as a missing ``--weights`` file
(click's own convention).

``--precision fp32|fp16|int8`` (from ``spec.PRECISIONS``; each format accepts those its record declares) and
``--optimize`` (fp32 only, formats with an optimised form). ``--fp16`` and ``--int8`` are hidden, deprecated
aliases of ``--precision`` that log one warning.

``--weights`` is a path or an ``http(s)://`` URL, downloaded once into the cache (``models.hub``) and checked
against ``--sha256`` when given (local files are checked too). The default output of a URL export goes to the
current folder, named after the URL's file name.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from ast_export.artifact import ArtifactFormat
from ast_export.cli_common import one_line_errors, weights_params
from ast_export.options import MAX_PARITY_WINDOWS, CalibrationOptions, ExportOptions, VerifyOptions
from ast_export.pipeline import export_and_verify, run_verify
from ast_export.source import load_source
from ast_export.spec import FP32, PRECISIONS

logger = logging.getLogger(__name__)

DEPRECATED_FLAGS = ("fp16", "int8")  # each was --<precision>; now --precision <precision>
VERIFY_FIELDS = ("audio", "manifest", "report", "max_windows", "threads")
WEIGHTS_HELP = "Weights file (modelo_audio.pth) written by ast-train or ast-export import."
PathArg = click.Path(dir_okay=False, path_type=Path)


def verify_params() -> list[click.Option]:
    """The options that make a :class:`VerifyOptions` (shared by every export command and ``verify``)."""
    existing = click.Path(exists=True, dir_okay=False, path_type=Path)
    return [
        click.Option(["--audio"], type=existing, multiple=True,
                     help="Audio file for the parity windows and the int8 calibration (repeatable). Default: the "
                          "manifest's songs, else deterministic test signals (with a warning)."),
        click.Option(["--manifest"], type=existing,
                     help="Manifest whose 'test' split gives labelled held-out songs, and whose 'train' split "
                          "calibrates --precision int8 (default: data/demo/manifest.csv when present)."),
        click.Option(["--report"], type=PathArg, help="JSON report path (default: <artifact>.verify.json)."),
        click.Option(["--max-windows"], type=click.IntRange(min=1), default=MAX_PARITY_WINDOWS, show_default=True,
                     help="Audio windows in the parity pool (noise, silence, clipping and a chirp are always "
                          "added)."),
        click.Option(["--threads"], type=click.IntRange(min=0), default=0, show_default=True,
                     help="onnxruntime intra-op threads for verification (0 = all cores)."),
    ]


def take_verify_options(kwargs: dict[str, Any]) -> VerifyOptions:
    """Pop the verify options out of a command's keyword arguments."""
    values = {name: kwargs.pop(name) for name in VERIFY_FIELDS}
    return VerifyOptions(**{**values, "audio": tuple(values["audio"])})


def precision_params(fmt: ArtifactFormat) -> list[click.Option]:
    """``--precision``, ``--optimize`` and the hidden deprecated ``--fp16``/``--int8``."""
    params = [
        click.Option(["--precision"], type=click.Choice(PRECISIONS), default=None,
                     help=f"Precision of the graph (default {FP32}); {fmt.name} exports "
                          f"{', '.join(fmt.precisions)}. fp16/int8 keep the frontend in fp32."),
        click.Option(["--optimize"], is_flag=True,
                     help="Fused attention (ORT transformer optimizer), fp32 only."
                          if fmt.can_optimize else f"Not available for {fmt.name}."),
    ]
    params += [click.Option([f"--{name}"], is_flag=True, hidden=True, help=f"Deprecated: --precision {name}.")
               for name in DEPRECATED_FLAGS]
    return params


def take_export_options(fmt: ArtifactFormat, kwargs: dict[str, Any]) -> ExportOptions:
    """Pop and validate the precision options (usage errors, exit 2) and the format's own settings."""
    chosen = kwargs.pop("precision")
    optimize = kwargs.pop("optimize")
    flags = [name for name in DEPRECATED_FLAGS if kwargs.pop(name)]
    for name in flags:
        logger.warning("--%s is deprecated; use --precision %s", name, name)
    given = ([chosen] if chosen else []) + flags
    if len(set(given)) > 1:
        raise click.UsageError(f"one precision per run (got {', '.join(given)})")
    precision = given[0] if given else FP32
    if precision not in fmt.precisions:
        raise click.UsageError(f"{fmt.name} exports {', '.join(fmt.precisions)} only (got --precision {precision})")
    if optimize and not fmt.can_optimize:
        raise click.UsageError(f"--optimize: {fmt.name} has no optimised form")
    if optimize and precision != FP32:
        raise click.UsageError(f"--optimize is fp32 only; drop --optimize or --precision {precision}")
    settings = {opt.name: kwargs.pop(opt.name) for opt in fmt.options if opt.name}
    return ExportOptions(precision, optimize, settings)


def export_command(fmt: ArtifactFormat) -> click.Command:
    """``ast-export <fmt.name>``: its options come from the record, its body is the shared path."""
    def export(weights: str, sha256: str | None, out: Path | None, no_verify: bool, **kwargs: Any) -> None:
        verify = take_verify_options(kwargs)
        options = replace(take_export_options(fmt, kwargs),
                          calibration=CalibrationOptions(verify.audio, verify.manifest))
        export_and_verify(fmt, weights, sha256, out, options, None if no_verify else verify)

    common = [
        click.Option(["--out"], type=PathArg,
                     help="Output path (default: next to the weights; for a URL, the current folder)."),
        click.Option(["--no-verify"], is_flag=True, help="Skip the parity check after export."),
    ]
    params = [*weights_params(WEIGHTS_HELP), *common, *precision_params(fmt), *fmt.options, *verify_params()]
    return click.Command(fmt.name, callback=one_line_errors(export), params=params, help=fmt.summary)


def verify(artifact: Path, weights: str, sha256: str | None, **kwargs: Any) -> None:
    """Re-check an existing artifact (.onnx, .ts, .pt2, ...) against the eager model; exit 1 on any miss."""
    run_verify(artifact, load_source(weights, sha256), take_verify_options(kwargs))
    click.echo(f"parity OK: {artifact}")


verify_cmd = click.Command(
    "verify", callback=one_line_errors(verify), help=verify.__doc__,
    params=[click.Argument(["artifact"], type=click.Path(exists=True, dir_okay=False, path_type=Path)),
            *weights_params("Weights file the artifact was exported from."), *verify_params()],
)
