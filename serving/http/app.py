"""The Starlette app: ``POST /v1/identify``, health and readiness, model metadata, metrics and the page.

``POST /v1/identify`` answers with exactly the object ``ast-serve identify --format json`` prints for one file,
built by the same function (:func:`serving.identify.song_result`). Order of checks, cheapest first: auth ->
query -> readiness -> admission (``max_queue``) -> content type -> declared length -> body (streamed, counted)
-> decode in a thread (header length first) -> batched inference -> matches. A client that disconnects, or a
deadline that passes, cancels whatever part of that chain is still to run.

Status codes: 400 bad parameters or multipart, 401 auth, 404/405 routing, 408 body too slow, 413 body or song
too long, 415 unknown format or content type, 422 undecodable audio, 500 inference failure, 503 warming up or
queue full (``Retry-After``), 504 deadline. Every error body is ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from serving.contract import one_line, warn_repairs, window_starts
from serving.http import limits
from serving.http.batcher import Batcher, InferenceError
from serving.http.decode import Cancelled, DecodedSong, decode_upload
from serving.http.limits import ClientGone, HttpError
from serving.http.metrics import CONTENT_TYPE, Metrics
from serving.http.options import HttpOptions
from serving.identify import hop_samples, song_result
from serving.matches import MatchOptions, SongResult
from serving.session import ModelSession

logger = logging.getLogger(__name__)

RETRY_AFTER_S = "1"
CLIENT_CLOSED = 499  # nginx's code for "client closed the request"; only ever seen in /metrics
ENDPOINTS = ("/", "/healthz", "/readyz", "/v1/model", "/v1/identify", "/metrics")

# The seam where an answer is made: a decoded song -> its result. The classifier below is the default;
# serving.http.indexed.retrieval_identifier (``--index``: catalogue search, voting, verification) is the other.
SongIdentifier = Callable[[str, DecodedSong, MatchOptions], Awaitable[SongResult]]
Warmup = Callable[[], None]


def classifier(session: ModelSession, batcher: Batcher, hop: int) -> SongIdentifier:
    """The classification answer (softmax over the trained records), as ``ast-serve identify`` gives it."""
    meta = session.metadata

    async def identify_song(name: str, song: DecodedSong, match: MatchOptions) -> SongResult:
        starts = window_starts(song.samples, meta.window_samples, hop)  # [N]
        probs, _ = await batcher.score(song.wave, starts)  # [N, C]
        return song_result(name, song.samples, starts, probs, meta, match)

    return identify_song


@dataclass
class Service:
    """Everything the endpoints share."""

    session: ModelSession
    options: HttpOptions
    metrics: Metrics = field(default_factory=Metrics)
    ready: bool = False
    in_flight: int = 0
    batcher: Batcher | None = None
    identify: SongIdentifier | None = None
    decoder: ThreadPoolExecutor | None = None


def create_app(session: ModelSession, options: HttpOptions | None = None, warmup: Warmup | None = None,
               identifier: Callable[[Service], SongIdentifier] | None = None) -> Starlette:
    """The service over a loaded session.

    Args:
        session: the validated model session (loaded before the port opens).
        options: limits and batching; defaults to :class:`HttpOptions`.
        warmup: runs once in the inference thread before ``/readyz`` turns 200; default: one batch of silence.
        identifier: builds the :data:`SongIdentifier`; default: :func:`classifier`.
    """
    opts = options or HttpOptions()
    opts.validate()
    svc = Service(session, opts)
    make_identifier = identifier or _default_identifier

    def warm_default() -> None:
        session.run(np.zeros((opts.max_batch, session.metadata.window_samples), np.float32))  # [B, W]

    @asynccontextmanager
    async def lifespan(_app: Starlette):
        svc.batcher = Batcher(session.run, session.metadata.window_samples, opts.max_batch,
                              opts.max_delay_ms / 1000.0, svc.metrics)
        svc.batcher.start()
        svc.identify = make_identifier(svc)
        svc.decoder = ThreadPoolExecutor(opts.decode_threads, thread_name_prefix="ast-serve-decode")
        warming = asyncio.get_running_loop().create_task(_warm_up(svc, warmup or warm_default))
        yield
        warming.cancel()
        await svc.batcher.stop()
        svc.decoder.shutdown(wait=True, cancel_futures=True)

    routes = [Route("/", _page), Route("/healthz", _healthz), Route("/readyz", _readyz),
              Route("/v1/model", _model), Route("/metrics", _metrics),
              Route("/v1/identify", _identify, methods=["POST"])]
    handlers: dict[Any, Callable] = {HttpError: _http_error, HTTPException: _starlette_error,
                                     Exception: _internal_error}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.state.service = svc
    app.add_middleware(_CountRequests, metrics=svc.metrics)
    return app


def _default_identifier(svc: Service) -> SongIdentifier:
    assert svc.batcher is not None
    return classifier(svc.session, svc.batcher, hop_samples(svc.session, svc.options.hop_s))


async def _warm_up(svc: Service, warm: Warmup) -> None:
    assert svc.batcher is not None
    try:
        await asyncio.get_running_loop().run_in_executor(svc.batcher.executor, warm)
    except Exception as err:  # the service stays alive (healthz) but never ready; say why once
        logger.error("warm-up failed, /readyz stays 503: %s", one_line(err))
        return
    svc.ready = True
    logger.info("ready: %s on %s", svc.session.path, svc.session.provider)


def _service(request: Request) -> Service:
    return request.app.state.service


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _http_error(_request: Request, err: Exception) -> Response:
    assert isinstance(err, HttpError)
    return _error(err.status, str(err), err.headers)


async def _starlette_error(_request: Request, err: Exception) -> Response:
    assert isinstance(err, HTTPException)
    return _error(err.status_code, str(err.detail).splitlines()[0], dict(err.headers or {}))


async def _internal_error(_request: Request, err: Exception) -> Response:
    logger.error("internal error: %s: %s", type(err).__name__, one_line(err))
    return _error(500, f"internal error ({type(err).__name__})")


async def _page(_request: Request) -> Response:
    return HTMLResponse(resources.files("serving.http").joinpath("page.html").read_text(encoding="utf-8"))


async def _healthz(_request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def _readyz(request: Request) -> Response:
    if not _service(request).ready:
        return _error(503, "model is warming up", {"Retry-After": RETRY_AFTER_S})
    return JSONResponse({"status": "ready"})


async def _model(request: Request) -> Response:
    svc = _service(request)
    limits.check_auth(request.headers.get("authorization"), svc.options.api_key)
    meta = svc.session.metadata
    body = {"path": svc.session.path, "provider": svc.session.provider, "backend": svc.session.backend_name,
            "precision": svc.session.precision, "ready": svc.ready,
            "weights_sha256": meta.raw.get("weights_sha256"), "labels": list(meta.labels),
            "sample_rate": meta.sample_rate, "window_samples": meta.window_samples,
            "hop_samples": hop_samples(svc.session, svc.options.hop_s), "window_s": meta.window_s,
            "metadata": meta.raw,
            "limits": {"max_batch": svc.options.max_batch, "max_delay_ms": svc.options.max_delay_ms,
                       "max_queue": svc.options.max_queue, "max_body_mb": svc.options.max_body_mb,
                       "max_audio_s": svc.options.max_audio_s, "timeout_s": svc.options.timeout_s}}
    return JSONResponse(body)


async def _metrics(request: Request) -> Response:
    svc = _service(request)
    limits.check_auth(request.headers.get("authorization"), svc.options.api_key)
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE)


async def _identify(request: Request) -> Response:
    svc = _service(request)
    opts = svc.options
    limits.check_auth(request.headers.get("authorization"), opts.api_key)
    match, name = limits.parse_query(request.query_params)
    if not svc.ready or svc.identify is None:
        raise HttpError(503, "model is warming up; retry shortly", {"Retry-After": RETRY_AFTER_S})
    if svc.in_flight >= opts.max_queue:
        raise HttpError(503, f"server busy: {opts.max_queue} requests in progress (--max-queue); retry shortly",
                        {"Retry-After": RETRY_AFTER_S})
    svc.in_flight += 1
    svc.metrics.in_flight.set(svc.in_flight)
    try:
        return await _admitted(request, svc, match, name)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)  # never sent: the connection is gone
    finally:
        svc.in_flight -= 1
        svc.metrics.in_flight.set(svc.in_flight)


async def _admitted(request: Request, svc: Service, match: MatchOptions, name: str | None) -> Response:
    opts = svc.options
    content_type = request.headers.get("content-type")
    kind = limits.body_kind(content_type)
    limits.check_length(request.headers.get("content-length"), opts.max_body_bytes)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + opts.timeout_s
    body = await limits.read_body(request.receive, opts.max_body_bytes, deadline, opts.timeout_s)
    if kind == "multipart":
        filename, body = limits.multipart_file(body, content_type or "")
        name = name or filename
    cancel = threading.Event()
    work = asyncio.ensure_future(_work(svc, limits.safe_name(name), body, match, cancel))
    try:
        result = await _until_gone(request, work, deadline - loop.time())
    except TimeoutError:
        raise HttpError(504, f"no answer within the request deadline of {opts.timeout_s:g} s (--timeout-s)") from None
    finally:
        cancel.set()
    return JSONResponse(result.to_dict())


async def _work(svc: Service, name: str, body: bytes, match: MatchOptions, cancel: threading.Event) -> SongResult:
    assert svc.identify is not None
    loop = asyncio.get_running_loop()
    rate = svc.session.metadata.sample_rate
    try:
        song = await loop.run_in_executor(svc.decoder, decode_upload, body, rate, svc.options.max_audio_s, cancel)
    except HttpError as err:
        svc.metrics.decode_errors.labels(str(err.status)).inc()
        raise
    warn_repairs(name, song.stats)
    try:
        result = await svc.identify(name, song, match)
    except InferenceError as err:
        raise HttpError(500, str(err)) from None
    if result.error is not None:
        raise HttpError(500, result.error)
    svc.metrics.audio_seconds.inc(song.samples / rate)
    return result


async def _until_gone(request: Request, work: asyncio.Future, timeout: float) -> SongResult:
    """``work``'s result; cancel it when the client disconnects (ClientGone) or ``timeout`` passes."""
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({work, watcher}, timeout=max(0.0, timeout),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if work in done:
        try:
            return work.result()
        except Cancelled:
            raise ClientGone() from None
    work.cancel()
    if watcher in done:
        raise ClientGone()
    raise TimeoutError


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


class _CountRequests:
    """ASGI middleware: every response's status and latency into the metrics."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        status = [CLIENT_CLOSED]

        async def counted(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        timer = self.metrics.latency.labels(endpoint).time()
        try:
            with timer:
                await self.app(scope, receive, counted)
        finally:
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
