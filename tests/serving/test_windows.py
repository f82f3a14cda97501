"""Windowing: placement rule, padding, end alignment, chunk-size invariance, multi-file batching."""

from __future__ import annotations

import numpy as np
import pytest

from serving.audio import AudioError
from serving.contract import window_starts
from serving.windows import iter_batches, iter_windows

WINDOW, HOP = 100, 40


def _chunks(signal: np.ndarray, size: int) -> list[np.ndarray]:
    return [signal[i: i + size] for i in range(0, signal.shape[0], size)]


def _collect(signal: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    groups = list(iter_windows(_chunks(signal, chunk), WINDOW, HOP))
    return np.concatenate([s for s, _ in groups]), np.concatenate([w for _, w in groups])


@pytest.mark.parametrize("length", [1, 37, 99, 100, 101, 139, 140, 141, 1000, 1234])
@pytest.mark.parametrize("chunk", [1, 7, 64, 100, 5000])
def test_windows_follow_rule_for_any_chunking(length: int, chunk: int) -> None:
    signal = np.arange(1, length + 1, dtype=np.float32)
    starts, wins = _collect(signal, chunk)
    np.testing.assert_array_equal(starts, window_starts(length, WINDOW, HOP))
    padded = np.concatenate([signal, np.zeros(WINDOW, np.float32)])
    for start, win in zip(starts, wins, strict=True):
        np.testing.assert_array_equal(win, padded[start: start + WINDOW])


def test_short_file_padded_to_one_window() -> None:
    starts, wins = _collect(np.ones(30, np.float32), 8)
    assert starts.tolist() == [0] and wins.shape == (1, WINDOW)
    assert wins[0, :30].sum() == 30 and not wins[0, 30:].any()


@pytest.mark.parametrize("length", [100, 101, 141, 999, 1000])
def test_exact_coverage_and_end_alignment(length: int) -> None:
    starts = window_starts(length, WINDOW, HOP)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s: s + WINDOW] = True
    assert covered.all() and starts[-1] + WINDOW == length
    assert (np.diff(starts) > 0).all() and (np.diff(starts) <= HOP).all()


def test_empty_stream_is_an_error() -> None:
    with pytest.raises(AudioError, match="no audio"):
        list(iter_windows([np.zeros(0, np.float32)], WINDOW, HOP))


def test_batches_mix_files_and_mark_completion() -> None:
    lengths = {"a": 250, "b": 30, "c": 0, "d": 500}

    def source(path, stats):
        if lengths[path] == 0:
            raise AudioError("empty file")
        return _chunks(np.full(lengths[path], ord(path), np.float32), 64)

    batches = list(iter_batches(list(lengths), WINDOW, HOP, 4, 16000, source=source))
    assert all(b.waves.shape[0] <= 4 for b in batches)
    index = np.concatenate([b.file_index for b in batches])
    starts = np.concatenate([b.starts for b in batches])
    assert (np.diff(index) >= 0).all()  # files in input order
    for i, name in enumerate(lengths):
        if lengths[name]:
            np.testing.assert_array_equal(starts[index == i], window_starts(lengths[name], WINDOW, HOP))
    done = {d.index: d for b in batches for d in b.done}
    assert sorted(done) == [0, 1, 2, 3]
    assert done[2].error == "empty file" and done[0].samples == 250 and done[1].samples == 30
    mixed = [b for b in batches if len(set(b.file_index.tolist())) > 1]
    assert mixed, "windows of several files must share a batch"


def test_done_rides_on_batch_with_last_window() -> None:
    source = lambda path, stats: [np.ones(250, np.float32)]  # noqa: E731
    seen: set[int] = set()
    for batch in iter_batches(["a", "b"], WINDOW, HOP, 3, 16000, source=source):
        seen.update(batch.file_index.tolist())
        for d in batch.done:
            assert d.index in seen  # a file is never done before its windows were handed out
