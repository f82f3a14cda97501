"""``ast-serve http --index CAT``: answer by retrieval (catalogue search, voting, verification), as ``identify --index``.

Retrieval (:class:`serving.retrieval.Retriever`) is synchronous code; it runs in worker threads. Its model
calls go through the service's dynamic batcher all the same: the session it is given is a
:class:`BatchedSession`, whose ``run`` hands the windows to the batcher on the event loop and waits, so the
embedding windows of concurrent requests share ONNX Runtime runs exactly as the classifier's do. Decoded
records used for verification are cached across requests (one lock around the cache).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from serving.contract import ModelMetadata, one_line, round_time
from serving.http.batcher import Batcher, InferenceError
from serving.http.decode import Cancelled, DecodedSong
from serving.http.limits import HttpError
from serving.matches import MatchOptions, SongResult
from serving.session import ModelSession

RETRIEVAL_ERRORS = (RuntimeError, ValueError, MemoryError)  # what identify --index reports per file


class BatchedSession:
    """The part of :class:`~serving.session.ModelSession` retrieval uses, with ``run`` through the batcher."""

    def __init__(self, session: ModelSession, batcher: Batcher, loop: asyncio.AbstractEventLoop,
                 cancel: threading.Event) -> None:
        self.session, self.batcher, self.loop, self.cancel = session, batcher, loop, cancel

    @property
    def metadata(self) -> ModelMetadata:
        """The wrapped session's metadata."""
        return self.session.metadata

    def __getattr__(self, name: str) -> Any:  # path, provider, labels ...
        return getattr(self.session, name)

    def run(self, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score ``waves`` [n, W] in the shared batcher (called from a worker thread)."""
        if self.cancel.is_set():
            raise Cancelled()
        window = waves.shape[1]
        starts = np.arange(waves.shape[0], dtype=np.int64) * window  # [n]: the rows, laid end to end
        flat = np.ascontiguousarray(waves, dtype=np.float32).reshape(-1)  # [n * W]
        return asyncio.run_coroutine_threadsafe(self.batcher.score(flat, starts), self.loop).result()


def open_catalogue(folder: str, session: ModelSession) -> Any:
    """The catalogue at ``folder`` checked against the model; ``CatalogueError`` (one line) when unusable."""
    from serving.catalogue import Catalogue

    return Catalogue.open(folder, session.metadata)


def retrieval_identifier(catalogue: Any, threads: int) -> Callable[[Any], Callable]:
    """A :data:`serving.http.app.SongIdentifier` factory answering from ``catalogue``."""
    pool = ThreadPoolExecutor(threads, thread_name_prefix="ast-serve-retrieval")

    def make(svc: Any) -> Callable:
        meta = svc.session.metadata

        async def identify_song(name: str, song: DecodedSong, match: MatchOptions) -> SongResult:
            loop = asyncio.get_running_loop()
            cancel = threading.Event()
            session = BatchedSession(svc.session, svc.batcher, loop, cancel)
            job = loop.run_in_executor(pool, _matches, session, catalogue, song.wave, match, svc.options.hop_s)
            try:
                found = await job
            except asyncio.CancelledError:
                cancel.set()  # the thread stops at its next model call
                raise
            return SongResult(name, round_time(song.samples / meta.sample_rate), found)

        return identify_song

    return make


def _matches(session: BatchedSession, catalogue: Any, wave: np.ndarray, match: MatchOptions,
             hop_s: float | None) -> list:
    from serving.retrieval import RetrievalOptions, Retriever

    opts = RetrievalOptions(top_k=match.top_k, threshold=match.threshold, hop_s=hop_s)
    try:
        return Retriever(session, catalogue, opts).matches(wave)  # type: ignore[arg-type]
    except InferenceError as err:
        raise HttpError(500, str(err)) from None
    except RETRIEVAL_ERRORS as err:
        raise HttpError(500, f"retrieval failed: {one_line(err)}") from None
