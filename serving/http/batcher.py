"""Dynamic batching: the windows of concurrent requests merged into one ONNX Runtime run.

A request hands in its song (``wave``) and window starts and awaits the scores. The batcher waits for the
first window, then up to ``max_delay_s`` for more, and runs as soon as ``max_batch`` windows wait (or the delay
is over), taking windows first come, first served; a long song spans several runs and its runs are shared
with whoever else is waiting. Windows are cut from the wave only when their batch is assembled, so a waiting
request holds its song once, not twice. Inference runs in one worker thread (ORT releases the GIL and uses
its own intra-op threads); the event loop never blocks on it.

A request that is cancelled (client gone, deadline) drops out: its windows not yet taken are never scored.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from serving.contract import one_line
from serving.http.metrics import Metrics

logger = logging.getLogger(__name__)

RunFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class InferenceError(Exception):
    """The ONNX Runtime run holding a request's windows failed; one line."""


@dataclass
class _Job:
    views: np.ndarray  # [L - W + 1, W] windows view of the (padded) wave, no copy
    starts: np.ndarray  # [N]
    future: asyncio.Future
    taken: int = 0
    probs: list[np.ndarray] = field(default_factory=list)
    embs: list[np.ndarray] = field(default_factory=list)

    @property
    def left(self) -> int:
        """Windows not yet handed to a run."""
        return self.starts.shape[0] - self.taken


class Batcher:
    """Merge windows of many requests into runs of at most ``max_batch`` windows."""

    def __init__(self, run: RunFn, window: int, max_batch: int, max_delay_s: float,
                 metrics: Metrics | None = None) -> None:
        self.run_fn, self.window = run, window
        self.max_batch, self.max_delay_s = max_batch, max_delay_s
        self.metrics = metrics
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="ast-serve-infer")
        self._jobs: deque[_Job] = deque()
        self._running: list[_Job] = []  # jobs with windows in the run in progress
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the batching loop on the running event loop (the app's lifespan calls it)."""
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="ast-serve-batcher")

    async def stop(self) -> None:
        """Stop the loop; whatever still waits fails (after a drain, only work of clients already gone)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for job in [*self._running, *self._jobs]:
            if not job.future.done():
                job.future.set_exception(InferenceError("the server is shutting down"))
        self.executor.shutdown(wait=True)

    async def score(self, wave: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores of ``wave``'s windows at ``starts`` -> ``(probs [N, C], embedding [N, D])``.

        Raises:
            InferenceError: the run holding some of these windows failed.
        """
        if wave.shape[0] < self.window:
            wave = np.pad(wave, (0, self.window - wave.shape[0]))  # [W]: a short song is zero-padded
        future = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(sliding_window_view(wave, self.window), starts, future))
        self._set_queue()
        self._wake.set()
        return await future  # cancelling this cancels the future: the loop skips the job

    def pending(self) -> int:
        """Windows waiting for a run."""
        return sum(job.left for job in self._jobs if not job.future.done())

    def _set_queue(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_windows.set(self.pending())

    async def _loop(self) -> None:
        while True:
            await self._gather()
            parts = self._take()
            if parts:
                await self._run(parts)

    async def _gather(self) -> None:
        """Wait for a first window, then up to ``max_delay_s`` for a full batch."""
        while self.pending() == 0:
            self._wake.clear()
            await self._wake.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay_s
        while self.pending() < self.max_batch and (remaining := deadline - loop.time()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                break

    def _take(self) -> list[tuple[_Job, np.ndarray]]:
        """Up to ``max_batch`` windows, first come first served -> [(job, windows [n, W])]."""
        parts, room = [], self.max_batch
        while self._jobs and room > 0:
            job = self._jobs[0]
            if job.future.done():  # cancelled (or failed): drop what it has left
                self._jobs.popleft()
                continue
            n = min(room, job.left)
            parts.append((job, job.views[job.starts[job.taken: job.taken + n]]))  # [n, W] copy
            job.taken += n
            room -= n
            if job.left == 0:
                self._jobs.popleft()
        self._set_queue()
        return parts

    async def _run(self, parts: list[tuple[_Job, np.ndarray]]) -> None:
        waves = np.concatenate([w for _, w in parts]) if len(parts) > 1 else parts[0][1]  # [B, W]
        loop = asyncio.get_running_loop()
        self._running = [job for job, _ in parts]
        try:
            probs, embs = await loop.run_in_executor(self.executor, self.run_fn, waves)
        except Exception as err:  # one failed run costs its requests, not the service
            logger.error("inference failed on a batch of %d windows: %s", waves.shape[0], one_line(err))
            for job, _ in parts:
                if not job.future.done():
                    job.future.set_exception(InferenceError(f"inference failed: {one_line(err)}"))
            return
        if self.metrics is not None:
            self.metrics.observe_batch(waves.shape[0], len({id(job) for job, _ in parts}))
        offset = 0
        for job, wins in parts:
            n = wins.shape[0]
            job.probs.append(probs[offset: offset + n])
            job.embs.append(embs[offset: offset + n])
            offset += n
            if not job.future.done() and sum(p.shape[0] for p in job.probs) == job.starts.shape[0]:
                job.future.set_result((np.concatenate(job.probs), np.concatenate(job.embs)))
