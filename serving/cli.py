"""``ast-serve``: identify samples in songs with an exported ast-sampleid ONNX model (no torch needed).

Exit codes: 0 every input scored; 1 some inputs failed (the others are still reported); 2 usage error or
unusable model. Per-file problems are one line on stderr (``path: problem``) and the result's ``error``;
there is never a traceback for bad input.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from serving.backends import BACKENDS, PRECISIONS
from serving.cli_help import EXAMPLES, finish_help, gather_inputs, option_warnings
from serving.contract import ModelError, log_to_stderr, show_progress
from serving.identify import IdentifyOptions, display_path, identify
from serving.matches import MatchOptions, default_threshold
from serving.output import FORMATS, default_format, make_writer
from serving.session import DEVICES, ModelSession, SessionOptions, default_streams, limit_blas_threads

logger = logging.getLogger("serving")

MODEL_ENV = "AST_SAMPLEID_MODEL"
DEMO_MODEL = os.path.join("runs", "demo", "modelo_audio.onnx")
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_BATCH = 16
MAX_BATCH = 1024  # a batch is preallocated: 1024 base-model windows are ~670 MB
BENCH_FORMATS = ("table", "json")

MODEL_HELP = (f"Exported .onnx model. Default: ${MODEL_ENV} if set, else {DEMO_MODEL} (relative to the "
              "current directory, what `make demo` writes).")


def default_model() -> str:
    """The model used when ``--model`` is absent: $AST_SAMPLEID_MODEL, else the demo export."""
    return os.environ.get(MODEL_ENV) or DEMO_MODEL


def _model_options(func: Callable) -> Callable:
    options = [
        # A folder is not refused here: the session names what it is and the model inside (serving.filekind).
        click.option("--model", "model", type=click.Path(), default=None, help=MODEL_HELP),
        click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                     help="auto: CUDA when it works, else CPU (one log line says which)."),
        click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Inference threads (0 = all cores)."),
        # --backend/--precision reach _open_session through the click context (not as parameters), so every
        # command built on these options gets them without changing its signature.
        click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                     expose_value=False, callback=_remember,
                     help="auto: ORT CUDA when a GPU works, else the fastest CPU choice for this CPU's flags "
                          "(one log line says which and why); ort: ONNX Runtime; openvino: OpenVINO CPU."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                     expose_value=False, callback=_remember,
                     help="Compute precision. auto: the export's, or the CPU rule's with --backend auto. "
                          "bf16/fp16: OpenVINO; int8: an int8 export."),
        click.option("--streams", type=click.IntRange(min=0), default=0, show_default=True,
                     expose_value=False, callback=_remember,
                     help="OpenVINO: batches split into this many parts run concurrently (threads shared). "
                          "0: 2 for identify, index and bench on two or more cores (as fast quiet, faster beside "
                          "other busy processes), 1 for http."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _remember(ctx: click.Context, param: click.Parameter, value: str) -> str:
    ctx.meta[f"ast_serve.{param.name}"] = value
    return value


def _open_session(model: str | None, device: str, threads: int, latency: bool = False) -> ModelSession:
    """Create the session (with the command's --backend/--precision/--streams) or exit 2 with a one-line error.

    ``latency``: a service answering one request at a time (http), which keeps one OpenVINO stream by default.
    """
    path = model or default_model()
    meta = click.get_current_context().meta
    backend, precision = meta.get("ast_serve.backend", "auto"), meta.get("ast_serve.precision", "auto")
    streams = meta.get("ast_serve.streams", 0) or default_streams(latency, threads)
    try:
        return ModelSession(path, SessionOptions(device=device, intra_threads=threads, backend=backend,
                                                 precision=precision, streams=streams))
    except ModelError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_USAGE)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logs on stderr, ONNX Runtime's own messages included.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.version_option(package_name="ast-sampleid")
def main(verbose: bool, quiet: bool) -> None:
    """Identify which recorded sample a song uses, and where, with an exported ast-sampleid model.

    Results go to stdout, logs and progress to stderr.
    """
    level = logging.ERROR if quiet else (logging.DEBUG if verbose else logging.INFO)
    log_to_stderr(level, "%(message)s")
    limit_blas_threads()


@main.command("identify")
@click.argument("paths", nargs=-1, type=click.Path(readable=False))
@click.option("--from-file", "from_file", type=click.Path(dir_okay=False), default=None,
              help="Also score the songs listed in LIST, one path a line (a PATH of - reads them from stdin).")
@_model_options
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Samples per song.")
@click.option("--hop", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Seconds between windows. Default: the model's hop (half a window).")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=DEFAULT_BATCH, show_default=True,
              help="Windows per inference call, drawn from as many files as needed.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format. Default: table on a terminal, jsonl otherwise.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Report 'no known sample' when the best score is below P; also admits windows scoring "
                   ">= P into a span. Default: the model's calibrated threshold (set at training for a 1 % "
                   "false-accept rate), if it has one; 0 turns it off. With --index: the calibrated score a "
                   "match needs (overrides --far).")
@click.option("--index", "index", type=click.Path(file_okay=False), default=None,
              help="Catalogue folder (ast-serve index build): answer by retrieval instead of the classifier.")
@click.option("--far", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=None,
              help="With --index: false-accept rate of the threshold (default: the catalogue's, 0.01).")
@click.option("--timeline", is_flag=True, help="Add per-window scores of the top-k samples to JSON output.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Write one PNG heat map per song into DIR.")
def identify_cmd(paths: tuple[str, ...], model: str | None, device: str, threads: int, top_k: int,
                 hop: float | None, batch_size: int, fmt: str | None, threshold: float | None,
                 timeline: bool, plot_dir: str | None, index: str | None, far: float | None,
                 from_file: str | None) -> None:
    """Find the known samples in PATHS (audio files: FLAC, WAV, OGG, MP3, ...).

    Every PATH gets one result, in order; the same path twice is scored twice. A directory, a missing file
    (e.g. a glob that matched nothing) or an undecodable file is a per-file error: it is reported and the
    run goes on. A PATH of - reads paths from stdin, one a line; --from-file LIST adds LIST's.
    """
    inputs = gather_inputs(paths, from_file)  # non-UTF-8 names arrive as surrogate escapes; os accepts them
    session = _open_session(model, device, threads)
    fmt = fmt or default_format(sys.stdout)
    for warning in option_warnings(hop_s=hop, window_s=session.metadata.window_s, fmt=fmt, timeline=timeline,
                                   top_k=top_k, labels=None if index is not None else len(session.labels)):
        logger.warning(warning)
    if index is not None:
        from serving.index_cli import identify_with_index

        sys.exit(identify_with_index(session, index, inputs, top_k, far, threshold, hop, batch_size, fmt))
    _log_threshold(threshold, session)
    opts = IdentifyOptions(hop_s=hop, batch_size=batch_size,
                           match=MatchOptions(top_k, threshold, timeline or plot_dir is not None))
    writer = make_writer(fmt, sys.stdout, [display_path(p) for p in inputs])
    sys.exit(_run_identify(session, inputs, opts, writer, timeline, plot_dir))


def _run_identify(session: ModelSession, inputs: list[str], opts: IdentifyOptions, writer: Any,
                  keep_timeline: bool, plot_dir: str | None) -> int:
    from tqdm import tqdm

    failed = 0
    bar = tqdm(total=len(inputs), unit="file", file=sys.stderr, disable=len(inputs) <= 1 or not show_progress(logger), leave=False)
    try:
        for result in identify(session, inputs, opts):
            if result.error is not None:
                failed += 1
                bar.write(f"{result.path}: {result.error}", file=sys.stderr)
            elif plot_dir is not None:
                _plot(result, plot_dir)
            if not keep_timeline:
                result.timeline = None
            writer.write(result)
            bar.update(1)
        writer.close()
    except BrokenPipeError:  # `ast-serve identify ... | head`: the reader left; stop quietly
        _silence_stdout()
        return EXIT_OK if not failed else EXIT_SOME_FAILED
    finally:
        bar.close()
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _log_threshold(given: float | None, session: ModelSession) -> None:
    """One line saying which "no match" threshold applies (the model's calibrated one unless --threshold)."""
    model_default = default_threshold(session.metadata.raw)
    if given is None and model_default is not None:
        far = session.metadata.raw.get("threshold_far")
        logger.info("no-match threshold %.4f (the model's, calibrated for a %s false-accept rate; --threshold 0 "
                    "turns it off)", model_default, f"{100 * far:g} %" if isinstance(far, float) else "stated")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _plot(result: Any, plot_dir: str) -> None:
    from serving.plot import plot_song

    try:
        written = plot_song(result, plot_dir)
        result.plot = None if written is None else str(written)  # the PNG's path in the JSON (`plot`)
    except (OSError, ValueError, RuntimeError) as err:  # a plot problem must not cost the answer
        logger.warning("%s: plot failed (%s)", result.path, str(err).splitlines()[0] if str(err) else err)


@main.command()
@_model_options
@click.option("--json", "as_json", is_flag=True, help="Print the raw metadata JSON.")
def info(model: str | None, device: str, threads: int, as_json: bool) -> None:
    """Print the model's metadata (labels, window, hop, configs, weights_sha256, exporter, opset)."""
    from serving.report import format_info

    session = _open_session(model, device, threads)
    click.echo(format_info(session, as_json))


@main.command()
@_model_options
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=DEFAULT_BATCH, show_default=True)
@click.option("--seconds", type=click.FloatRange(min=0.0, min_open=True), default=10.0, show_default=True,
              help="How long to run on synthetic windows.")
@click.option("--files", multiple=True, type=click.Path(readable=False), help="Bench the whole identify path (decoding "
              "included) over these audio files instead of synthetic windows: `--files a.flac b.flac` or "
              "repeated `--files`.")
@click.option("--hop", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Seconds between windows (real-time factor is computed at this hop).")
@click.option("--format", "fmt", type=click.Choice(BENCH_FORMATS), default="table", show_default=True,
              help="json: one object (clips_per_s, rtf, p50_ms, p95_ms, backend, precision, provider, ...).")
@click.argument("more_files", nargs=-1, type=click.Path(readable=False), metavar="[FILES]...")
def bench(model: str | None, device: str, threads: int, batch_size: int, seconds: float,
          files: tuple[str, ...], hop: float | None, fmt: str, more_files: tuple[str, ...]) -> None:
    """Measure clips/s, real-time factor, latency p50/p95 per batch and the backend/provider actually used.

    FILES (or --files) bench the identify path over audio files; without them, synthetic windows. Paths
    after `--files a.flac` are taken as more files, so `--files a.flac b.flac` works.
    """
    from serving.report import bench_files, bench_synthetic

    session = _open_session(model, device, threads)
    paths = list(files) + list(more_files)  # click options take one value; the rest arrive as arguments
    if paths:
        report = bench_files(session, paths, IdentifyOptions(hop_s=hop, batch_size=batch_size))
    else:
        report = bench_synthetic(session, batch_size, seconds, hop)
    click.echo(report.format(fmt))


from serving.http.command import http_command  # noqa: E402  (click only; starlette loads when `http` runs)

main.add_command(http_command(_model_options, _open_session))

from serving.index_cli import index_command  # noqa: E402  (click only; FAISS loads when a command runs)

main.add_command(index_command(_model_options, _open_session))
finish_help(main, EXAMPLES)  # an example in every --help, uncut one-line listings


if __name__ == "__main__":  # pragma: no cover
    main()
