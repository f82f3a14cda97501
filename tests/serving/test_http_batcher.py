"""The dynamic batcher alone: merging, splitting, cancellation, failures, shutdown (no server, no model)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serving.http.batcher import Batcher, InferenceError

WINDOW = 4


class Recorder:
    """A fake model: probs = the window's first sample; records each run's size."""

    def __init__(self, fail: bool = False) -> None:
        self.sizes: list[int] = []
        self.fail = fail

    def __call__(self, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.sizes.append(waves.shape[0])
        if self.fail:
            raise RuntimeError("boom\nsecond line")
        return waves[:, :1].copy(), waves[:, -1:].copy()


def _song(n: int, offset: float) -> tuple[np.ndarray, np.ndarray]:
    wave = offset + np.arange(n * WINDOW, dtype=np.float32)  # [n * W]
    return wave, np.arange(n, dtype=np.int64) * WINDOW


async def _with(batcher: Batcher, coro):
    batcher.start()
    try:
        return await coro
    finally:
        await batcher.stop()


def test_windows_of_concurrent_requests_share_runs_and_come_back_in_order() -> None:
    model = Recorder()
    batcher = Batcher(model, WINDOW, max_batch=8, max_delay_s=0.05)
    songs = [_song(n, 1000.0 * i) for i, n in enumerate([3, 5, 1, 12])]

    async def main():
        return await asyncio.gather(*(batcher.score(w, s) for w, s in songs))

    results = asyncio.run(_with(batcher, main()))
    for (wave, starts), (probs, embs) in zip(songs, results, strict=True):
        assert np.array_equal(probs[:, 0], wave[starts]) and np.array_equal(embs[:, 0], wave[starts + WINDOW - 1])
    assert sum(model.sizes) == 21 and max(model.sizes) == 8 and len(model.sizes) == 3  # 8 + 8 + 5


def test_a_short_song_is_zero_padded() -> None:
    batcher = Batcher(Recorder(), WINDOW, max_batch=8, max_delay_s=0.0)
    probs, embs = asyncio.run(_with(batcher, batcher.score(np.array([0.5], np.float32), np.zeros(1, np.int64))))
    assert probs[0, 0] == 0.5 and embs[0, 0] == 0.0


def test_a_cancelled_request_is_not_scored() -> None:
    model = Recorder()
    batcher = Batcher(model, WINDOW, max_batch=16, max_delay_s=0.2)

    async def main():
        doomed = asyncio.ensure_future(batcher.score(*_song(6, 0.0)))
        await asyncio.sleep(0.01)
        doomed.cancel()
        kept = await batcher.score(*_song(2, 100.0))
        return doomed, kept

    doomed, kept = asyncio.run(_with(batcher, main()))
    assert doomed.cancelled() and kept[0].shape == (2, 1) and sum(model.sizes) == 2


def test_a_failed_run_fails_its_requests_with_one_line() -> None:
    batcher = Batcher(Recorder(fail=True), WINDOW, max_batch=8, max_delay_s=0.0)
    with pytest.raises(InferenceError, match="^inference failed: boom$"):
        asyncio.run(_with(batcher, batcher.score(*_song(2, 0.0))))


def test_stop_fails_what_still_waits() -> None:
    batcher = Batcher(Recorder(), WINDOW, max_batch=64, max_delay_s=10.0)

    async def main():
        batcher.start()
        waiting = asyncio.ensure_future(batcher.score(*_song(2, 0.0)))
        await asyncio.sleep(0.05)
        await batcher.stop()
        return await asyncio.gather(waiting, return_exceptions=True)

    (outcome,) = asyncio.run(main())
    assert isinstance(outcome, InferenceError) and "shutting down" in str(outcome)
