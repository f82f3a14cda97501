"""The ``ast-serve http`` click command (registered by :mod:`serving.cli`; starlette loads only when it runs)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from serving.http.options import API_KEY_ENV, HttpOptions

EXIT_USAGE = 2
DEFAULTS = HttpOptions()


def _limits(func: Callable) -> Callable:
    flags = [
        click.option("--host", default=DEFAULTS.host, show_default=True, help="Interface to bind."),
        click.option("--port", type=click.IntRange(0, 65535), default=DEFAULTS.port, show_default=True),
        click.option("--max-batch", type=click.IntRange(1, 1024), default=DEFAULTS.max_batch, show_default=True,
                     help="Most windows per inference run, merged across requests."),
        click.option("--max-delay-ms", type=click.FloatRange(min=0.0), default=DEFAULTS.max_delay_ms,
                     show_default=True, help="Longest a window waits for others to fill its batch."),
        click.option("--max-queue", type=click.IntRange(min=1), default=DEFAULTS.max_queue, show_default=True,
                     help="Most requests in progress; more get 503 with Retry-After."),
        click.option("--max-body-mb", type=click.FloatRange(min=0.0, min_open=True), default=DEFAULTS.max_body_mb,
                     show_default=True, help="Largest request body (413 beyond)."),
        click.option("--max-audio-s", type=click.FloatRange(min=0.0, min_open=True), default=DEFAULTS.max_audio_s,
                     show_default=True, help="Longest song in seconds (413 beyond, from the header)."),
        click.option("--timeout-s", type=click.FloatRange(min=0.0, min_open=True), default=DEFAULTS.timeout_s,
                     show_default=True, help="Request deadline: body by then (else 408), answer by then (else 504)."),
        click.option("--hop", type=click.FloatRange(min=0.0, min_open=True), default=None,
                     help="Seconds between windows. Default: the model's hop."),
        click.option("--index", "index", type=click.Path(file_okay=False), default=None,
                     help="Catalogue folder (ast-serve index build): answer by retrieval, as identify --index."),
        click.option("--decode-threads", type=click.IntRange(min=1), default=DEFAULTS.decode_threads,
                     show_default=True, help="Threads decoding uploads."),
    ]
    for flag in reversed(flags):
        func = flag(func)
    return func


def _retrieval(index: str, session: object, options: HttpOptions) -> Callable:
    """The retrieval answer over the catalogue ``index``, or exit 2 with its one-line refusal."""
    from serving.catalogue_format import CatalogueError
    from serving.http.indexed import open_catalogue, retrieval_identifier

    try:
        catalogue = open_catalogue(index, session)  # type: ignore[arg-type]
    except CatalogueError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_USAGE)
    return retrieval_identifier(catalogue, options.decode_threads)


def http_command(model_options: Callable, open_session: Callable) -> click.Command:
    """Build the command with the CLI's shared ``--model/--device/--threads`` options and session opener."""

    @click.command("http")
    @model_options
    @_limits
    def http(model: str | None, device: str, threads: int, **limits: object) -> None:
        """Serve identification over HTTP: POST /v1/identify, /healthz, /readyz, /v1/model, /metrics, / (page).

        Binds 127.0.0.1 by default. With $AST_SAMPLEID_API_KEY set, every endpoint except /healthz, /readyz and
        the page needs 'Authorization: Bearer <key>'. SIGTERM drains in-flight requests and exits 0.
        """
        try:
            import starlette  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError as err:
            click.echo(f"error: ast-serve http needs the [http] extra ({err.name} is missing): "
                       "pip install 'ast-sampleid[http]'", err=True)
            sys.exit(EXIT_USAGE)
        key = os.environ.get(API_KEY_ENV)
        if key is not None and not key.strip():
            click.echo(f"error: ${API_KEY_ENV} is set but empty; unset it or give it a key", err=True)
            sys.exit(EXIT_USAGE)
        hop, index = limits.pop("hop"), limits.pop("index")
        options = HttpOptions(hop_s=hop, api_key=key.strip() if key else None, **limits)  # type: ignore[arg-type]
        # a model that fails: one line, exit 2, port never opened
        session = open_session(model, device, threads, latency=True)
        config = {} if index is None else {"identifier": _retrieval(index, session, options)}
        from serving.http.server import serve

        sys.exit(serve(session, options, **config))

    return http
