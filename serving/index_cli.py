"""``ast-serve index build|add|info`` and the retrieval side of ``ast-serve identify --index``.

Exit codes: 0 done; 1 some records (or songs) failed, each one line on stderr, the rest indexed (scored);
2 usage error, unusable model or catalogue (another model's, unknown format, corrupt, locked by another
writer), each one line on stderr. Never a traceback for bad input.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from serving.catalogue_format import CatalogueError
from serving.contract import one_line, show_progress

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
INFO_FORMATS = ("table", "json")


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _scales(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        scales = tuple(sorted({float(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated speeds such as 0.9,1,1.1, got {text!r}") from None
    if not scales or any(not 0.25 <= s <= 4.0 for s in scales):
        raise click.BadParameter(f"speeds must lie in [0.25, 4], got {text!r}")
    return scales


def _sources(records: tuple[str, ...], audio: tuple[str, ...]) -> list:
    from serving.catalogue_build import read_records_csv, sources_from_audio

    out = []
    for csv_path in records:
        out.extend(read_records_csv(csv_path))
    return out + sources_from_audio(list(audio))


def _finish(report: Any, folder: str, verb: str) -> int:
    logger.info("%s %d record(s), %d window(s) into %s; %d skipped, %d failed", verb, len(report.indexed),
                report.windows, folder, len(report.skipped), len(report.failed))
    return EXIT_SOME_FAILED if report.failed else EXIT_OK


def index_command(model_options: Callable, open_session: Callable) -> click.Group:
    """The ``index`` group, given the CLI's shared model options and session opener."""

    @click.group("index")
    def index() -> None:
        """Build and inspect the retrieval catalogue (full records -> FAISS index + calibration)."""

    index.add_command(_build_command(model_options, open_session))
    index.add_command(_add_command(model_options, open_session))
    index.add_command(_info_command())
    return index


def _build_command(model_options: Callable, open_session: Callable) -> click.Command:
    @click.command("build")
    @click.argument("audio", nargs=-1, type=click.Path(readable=False))
    @model_options
    @click.option("--records", "records", multiple=True, type=click.Path(dir_okay=False),
                  help="CSV with columns sample,record_path (paths relative to the CSV). Repeatable.")
    @click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Catalogue folder.")
    @click.option("--hop", type=click.FloatRange(min=0.0, min_open=True), default=None,
                  help="Index hop in seconds. Default: the model's hop, at most 0.5 s.")
    @click.option("--scales", default=None, help="Comma-separated speeds to index (default 0.797,0.893,1,1.12,1.254).")
    @click.option("--batch-size", type=click.IntRange(1, 1024), default=32, show_default=True)
    @click.option("--far", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.01,
                  show_default=True, help="Default false-accept rate stored with the calibration.")
    def build(audio: tuple[str, ...], model: str | None, device: str, threads: int, records: tuple[str, ...],
              out: str, hop: float | None, scales: str | None, batch_size: int, far: float) -> None:
        """Index full records (from --records CSVs and/or AUDIO files, named by their stem) into OUT."""
        from serving.catalogue_build import DEFAULT_SCALES, BuildOptions, build_catalogue

        if not records and not audio:
            raise click.UsageError("give --records CSV and/or AUDIO files")
        session = open_session(model, device, threads)
        opts = BuildOptions(hop, _scales(scales) or DEFAULT_SCALES, batch_size, far, sys.stderr.isatty())
        try:
            report = build_catalogue(session, _sources(records, audio), out, opts, os.path.abspath(session.path))
        except (CatalogueError, OSError) as err:
            _fail(one_line(err))
        sys.exit(_finish(report, out, "indexed"))

    return build


def _add_command(model_options: Callable, open_session: Callable) -> click.Command:
    @click.command("add")
    @click.argument("catalogue", type=click.Path(file_okay=False))
    @click.argument("audio", nargs=-1, type=click.Path(readable=False))
    @model_options
    @click.option("--records", "records", multiple=True, type=click.Path(dir_okay=False),
                  help="CSV with columns sample,record_path. Repeatable.")
    @click.option("--batch-size", type=click.IntRange(1, 1024), default=32, show_default=True)
    def add(catalogue: str, audio: tuple[str, ...], model: str | None, device: str, threads: int,
            records: tuple[str, ...], batch_size: int) -> None:
        """Add records to CATALOGUE without a rebuild (default model: the one it was built with)."""
        from serving.catalogue_build import BuildOptions, add_to_catalogue
        from serving.catalogue_format import read_meta

        if not records and not audio:
            raise click.UsageError("give --records CSV and/or AUDIO files")
        try:
            meta = read_meta(catalogue)
        except (CatalogueError, OSError) as err:
            _fail(one_line(err))
        session = open_session(model or meta.model_path or None, device, threads)
        opts = BuildOptions(batch_size=batch_size, progress=sys.stderr.isatty())
        try:
            report = add_to_catalogue(session, catalogue, _sources(records, audio), opts)
        except (CatalogueError, OSError) as err:
            _fail(one_line(err))
        sys.exit(_finish(report, catalogue, "added"))

    return add


def _info_command() -> click.Command:
    @click.command("info")
    @click.argument("catalogue", type=click.Path(file_okay=False))
    @click.option("--format", "fmt", type=click.Choice(INFO_FORMATS), default="table", show_default=True)
    def info(catalogue: str, fmt: str) -> None:
        """Records, windows, bytes, scales, hop, weights_sha256 and calibration of CATALOGUE."""
        from serving.catalogue import Catalogue

        try:
            data = Catalogue.open(catalogue).info()
        except (CatalogueError, OSError) as err:
            _fail(one_line(err))
        click.echo(json.dumps(data, indent=2) if fmt == "json" else _info_table(data))

    return info


def _info_table(data: dict[str, Any]) -> str:
    cal = data["calibration"]
    rows = [("catalogue", data["path"]), ("records", data["records"]),
            ("windows", f"{data['windows']} ({data['index']}, {data['dim']}-d)"),
            ("landmarks", "none (embeddings alone)" if data["landmarks"] is None else f"{data['landmarks']} triplets"),
            ("bytes", f"{data['bytes']} on disk"), ("scales", ", ".join(map(str, data["scales"]))),
            ("hop", f"{data['hop_s']} s (window {data['window_s']} s)"), ("weights_sha256", data["weights_sha256"]),
            ("model", data["model_path"] or "-"),
            ("calibration", f"{cal['null_queries']} null queries; FAR {cal['far']:.2%} -> score >= "
                            f"{cal['threshold']:.4f} (raw >= {cal['raw_threshold']})")]
    return "\n".join(f"{name:<15} {value}" for name, value in rows)


def identify_with_index(session: Any, index: str, inputs: list[str], top_k: int, far: float | None,
                        threshold: float | None, hop: float | None, batch_size: int, fmt: str) -> int:
    """``identify --index``: answer every input by retrieval; returns the exit code."""
    from tqdm import tqdm

    from serving.catalogue import Catalogue
    from serving.identify import display_path
    from serving.output import make_writer
    from serving.retrieval import RetrievalOptions, identify_indexed

    try:
        catalogue = Catalogue.open(index, session.metadata)
    except (CatalogueError, OSError) as err:
        _fail(one_line(err))
    opts = RetrievalOptions(top_k=top_k, far=far, threshold=threshold, batch_size=batch_size, hop_s=hop)
    writer = make_writer(fmt, sys.stdout, [display_path(p) for p in inputs], retrieval=True)
    failed = 0
    bar = tqdm(total=len(inputs), unit="file", file=sys.stderr, disable=len(inputs) <= 1 or not show_progress(logger),
               leave=False)
    try:
        for result in identify_indexed(session, catalogue, inputs, opts):
            if result.error is not None:
                failed += 1
                bar.write(f"{result.path}: {result.error}", file=sys.stderr)
            writer.write(result)
            bar.update(1)
        writer.close()
    except BrokenPipeError:  # the reader left (`| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    finally:
        bar.close()
    return EXIT_SOME_FAILED if failed else EXIT_OK
