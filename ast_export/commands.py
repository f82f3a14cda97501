"""``ast-export`` subcommands: ``onnx``, ``torchscript``, ``pt2`` and ``verify``.

Each export writes the artifact, logs its wall time and size, prints its path on stdout, then verifies it
(unless ``--no-verify``) and exits 1 when parity fails. Errors are one line on stderr: exit 1 for a bad file, a
failed download or a failed export/verification, 2 for usage errors such as a missing ``--weights`` file
(click's own convention).

``--weights`` is a path or an ``http(s)://`` URL, downloaded once into the cache (``models.hub``) and checked
against ``--sha256`` when given (local files are checked too). The default output of a URL export goes to the
current folder, named after the URL's file name.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ast_export import variants
from ast_export.errors import ArtifactError, ExportError, ParityError
from ast_export.inputs import MAX_PARITY_WINDOWS
from ast_export.onnx_export import export_fp32_model, write_onnx
from ast_export.pt2_export import export_pt2
from ast_export.source import ExportResult, Source, load_source
from ast_export.spec import DEFAULT_OPSET, MIN_OPSET
from ast_export.torchscript_export import export_torchscript
from ast_export.verify import default_report_path, verify_artifact, write_report
from models.hub import is_url, sha256_option_callback, url_basename

logger = logging.getLogger(__name__)

SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts", "pt2": ".pt2"}
VARIANT_INFIX = {"fp32": "", "fp16": ".fp16", "int8": ".int8", "fp32-optimized": ".opt"}
MB = 1024 * 1024


def one_line_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the package's expected failures into one stderr line and exit code 1 (no traceback)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ExportError, ParityError, ArtifactError, ValueError, OSError) as err:
            # models.weights.WeightsError is a ValueError; OSError covers unreadable/unwritable paths.
            click.echo(f"error: {err}", err=True)
            raise SystemExit(1) from None
    return wrapper


class WeightsParam(click.ParamType):
    """``--weights``: an ``http(s)://`` URL as given, or a local file that must exist (else a usage error)."""

    name = "PATH|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = os.fspath(value)
        if is_url(text):
            return text
        path = Path(text).expanduser()
        if not path.is_file():
            self.fail(f"{text}: {'is a folder' if path.is_dir() else 'no such file'}", param, ctx)
        return str(path)


def weights_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--weights", required=True, type=WeightsParam(), help=f"{help_text} Path or http(s) URL.")


def sha256_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--sha256`` as every command that reads weights spells it (checked by ``models.hub.resolve_weights``)."""
    return click.option("--sha256", callback=sha256_option_callback,
                        help=f"Expected SHA-256 of {what} (URL download or local file).")


def default_out(weights: str | os.PathLike, fmt: str, precision: str = "fp32") -> Path:
    """``<weights stem><variant infix><suffix>`` next to the weights, e.g. ``modelo_audio.int8.onnx``; for a URL,
    in the current folder and named after the URL's file name."""
    base = Path.cwd() / url_basename(str(weights)) if is_url(weights) else Path(weights)
    return base.with_name(base.stem + VARIANT_INFIX[precision] + SUFFIXES[fmt])


def _report_done(result: ExportResult) -> None:
    logger.info("wrote %s (%s, %s) in %.1f s, %.2f MB", result.path, result.format, result.precision,
                result.seconds, result.size_bytes / MB)
    click.echo(str(result.path))


def run_verify(artifact: Path, src: Source, audio: tuple[Path, ...], manifest: Path | None,
               report: Path | None, max_windows: int = MAX_PARITY_WINDOWS) -> None:
    """Verify ``artifact``, write the JSON report, raise ParityError on any miss."""
    start = time.perf_counter()
    result = verify_artifact(artifact, src, list(audio) or None, manifest, max_windows=max_windows)
    report_path = report or default_report_path(artifact)
    write_report(result, report_path)
    failed = [c for c in result.checks if not c.passed]
    logger.info("verify: %d checks, %d failed, %.1f s; report %s", len(result.checks), len(failed),
                time.perf_counter() - start, report_path)
    if failed:
        first = failed[0]
        raise ParityError(f"parity FAILED for {artifact}: {first.runtime} {first.name}"
                          f"{f' batch={first.batch}' if first.batch else ''}"
                          f"{f' {first.kind}' if first.kind else ''}: {first.detail} (report: {report_path})")


def _verify_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--audio", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
                     help="Audio file for the parity windows (repeatable). Default: demo test songs, else "
                          "synthetic music."),
        click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Manifest whose 'test' split gives held-out songs (default: data/demo/manifest.csv "
                          "when present)."),
        click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
                     help="JSON report path (default: <artifact>.verify.json)."),
        click.option("--max-windows", type=click.IntRange(min=1), default=MAX_PARITY_WINDOWS, show_default=True,
                     help="Audio windows in the parity pool (noise, silence and clipping are always added)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _export_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = _verify_options(func)
    func = click.option("--no-verify", is_flag=True, help="Skip the parity check after export.")(func)
    func = click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                        help="Output path (default: next to the weights; for a URL, the current folder).")(func)
    func = sha256_option("the weights file")(func)
    return weights_option("Weights file (modelo_audio.pth) written by ast-train or ast-export import.")(func)


def _precision(fp16: bool, int8: bool, optimize: bool) -> str:
    chosen = [name for name, on in (("fp16", fp16), ("int8", int8), ("fp32-optimized", optimize)) if on]
    if len(chosen) > 1:
        raise click.UsageError("--fp16, --int8 and --optimize are separate variants; pick one per run")
    return chosen[0] if chosen else "fp32"


def _onnx_variant(model: Any, src: Source, precision: str) -> tuple[Any, dict[str, Any]]:
    if precision == "fp32":
        return model, {}
    if precision == "fp16":
        model, info = variants.to_fp16(model)
    elif precision == "int8":
        model, info = variants.to_int8(model)
    else:
        cfg = src.wf.model_config
        model, info = variants.optimize(model, cfg.num_heads, cfg.embed_dim, cfg.depth)
        logger.info("fused %d of %d layers' attention", info.fused_attention, info.layers)
    return model, {k: v for k, v in vars(info).items() if v is not None}


@click.command("onnx")
@_export_options
@click.option("--opset", type=click.IntRange(min=MIN_OPSET), default=DEFAULT_OPSET, show_default=True)
@click.option("--fp16", is_flag=True, help="float16 encoder (fp32 I/O and frontend), for the CUDA EP.")
@click.option("--int8", is_flag=True, help="Dynamic int8 quantisation of the encoder's MatMuls, for CPU.")
@click.option("--optimize", is_flag=True, help="ORT transformer optimizer (fused attention), fp32.")
@one_line_errors
def onnx_cmd(weights: str, sha256: str | None, out: Path | None, no_verify: bool, audio: tuple[Path, ...],
             manifest: Path | None, report: Path | None, max_windows: int, opset: int, fp16: bool, int8: bool,
             optimize: bool) -> None:
    """Export the scoring graph (frontend included) to one self-contained ONNX file."""
    precision = _precision(fp16, int8, optimize)
    src = load_source(weights, sha256)
    out = out or default_out(weights, "onnx", precision)
    start = time.perf_counter()
    model, exporter = export_fp32_model(src, opset)
    model, notes = _onnx_variant(model, src, precision)
    meta = write_onnx(model, src, out, precision=precision, opset=opset, extra={"variant": notes} if notes else None)
    _report_done(ExportResult(out, "onnx", precision, time.perf_counter() - start, out.stat().st_size, meta,
                              {"exporter": exporter, **notes}))
    if not no_verify:
        run_verify(out, src, audio, manifest, report, max_windows)


def _export_torch_format(exporter: Callable[[Source, Path], ExportResult], fmt: str, weights: str,
                         sha256: str | None, out: Path | None, no_verify: bool, audio: tuple[Path, ...],
                         manifest: Path | None, report: Path | None, max_windows: int) -> None:
    """TorchScript / .pt2: load, export, report, then verify unless told not to."""
    src = load_source(weights, sha256)
    result = exporter(src, out or default_out(weights, fmt))
    _report_done(result)
    if not no_verify:
        run_verify(result.path, src, audio, manifest, report, max_windows)


@click.command("torchscript")
@_export_options
@one_line_errors
def torchscript_cmd(weights: str, sha256: str | None, out: Path | None, no_verify: bool,
                    audio: tuple[Path, ...], manifest: Path | None, report: Path | None, max_windows: int) -> None:
    """Export the scoring graph with torch.jit.trace (check_trace on a second batch size)."""
    _export_torch_format(export_torchscript, "torchscript", weights, sha256, out, no_verify, audio, manifest,
                         report, max_windows)


@click.command("pt2")
@_export_options
@one_line_errors
def pt2_cmd(weights: str, sha256: str | None, out: Path | None, no_verify: bool, audio: tuple[Path, ...],
            manifest: Path | None, report: Path | None, max_windows: int) -> None:
    """Export the scoring graph with torch.export (dynamic batch) to a .pt2 file."""
    _export_torch_format(export_pt2, "pt2", weights, sha256, out, no_verify, audio, manifest, report, max_windows)


@click.command("verify")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@weights_option("Weights file the artifact was exported from.")
@sha256_option("the weights file")
@_verify_options
@one_line_errors
def verify_cmd(artifact: Path, weights: str, sha256: str | None, audio: tuple[Path, ...], manifest: Path | None,
               report: Path | None, max_windows: int) -> None:
    """Re-check an existing artifact (.onnx, .ts, .pt2) against the eager model; exit 1 on any miss."""
    run_verify(artifact, load_source(weights, sha256), audio, manifest, report, max_windows)
    click.echo(f"parity OK: {artifact}")
