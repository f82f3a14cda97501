"""Cut streamed audio into fixed model windows and batch windows from many files together.

Window placement is :func:`serving.contract.window_starts` (the one rule training and export use too): while a
file streams, the regular starts that already fit are emitted; once its length is final, the tail window
(aligned to the end) or the single zero-padded window of a short file follows. Only about one window plus one
decoded block is held per file, however long the file is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from serving.audio import AudioError, DecodeStats, stream_audio
from serving.contract import window_starts

logger = logging.getLogger(__name__)

Chunks = Iterable[np.ndarray]


def iter_windows(chunks: Chunks, window: int, hop: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(starts [n], windows [n, window])`` groups from a stream of mono chunks.

    Args:
        chunks: 1-D float32 blocks in stream order.
        window: samples per window.
        hop: samples between window starts (> 0).

    Raises:
        AudioError: the stream holds no samples at all.
    """
    window_starts(0, window, hop)  # validates window and hop before any decoding
    buf = np.zeros(0, dtype=np.float32)
    buf_off = total = emitted = 0  # buf[0] is absolute sample buf_off; emitted = windows handed out
    for chunk in chunks:
        if chunk.size == 0:
            continue
        buf = np.concatenate([buf, chunk.astype(np.float32, copy=False)])
        total += chunk.shape[0]
        starts = window_starts(total, window, hop, complete=False)[emitted:]  # [n]
        if starts.size:
            yield starts, _cut(buf, buf_off, starts, window)
            emitted += starts.size
        next_start = emitted * hop  # the next regular start; the end-aligned tail starts at total - window
        keep_from = max(buf_off, min(next_start, total - window))
        buf, buf_off = buf[keep_from - buf_off:], keep_from
    if total == 0:
        raise AudioError("contains no audio samples")
    tail = window_starts(total, window, hop)[emitted:]  # [0 or 1]: the end-aligned or the padded window
    if tail.size:
        padded = np.pad(buf, (0, max(0, window - buf.shape[0])))  # a short file is zero-padded at the end
        yield tail, _cut(padded, buf_off, tail, window)


def _cut(buf: np.ndarray, buf_off: int, starts: np.ndarray, window: int) -> np.ndarray:
    """Copies of the windows at absolute ``starts`` from a buffer that begins at sample ``buf_off``."""
    views = sliding_window_view(buf, window)  # [len - window + 1, window], no copy
    return views[starts - buf_off]  # fancy index -> [n, window] copy


@dataclass
class FileDone:
    """A file whose windows have all been handed out (or that failed)."""

    index: int
    samples: int = 0  # decoded length at the target rate
    error: str | None = None
    stats: DecodeStats | None = None


@dataclass
class Batch:
    """Windows from one or more files, plus the files that are complete once this batch is scored."""

    waves: np.ndarray  # [n, window] float32
    file_index: np.ndarray  # [n] int64, index into the input list
    starts: np.ndarray  # [n] int64, window start in samples
    done: list[FileDone] = field(default_factory=list)


ChunkSource = Callable[[str | bytes | os.PathLike, DecodeStats], Chunks]


def _default_source(sample_rate: int) -> ChunkSource:
    return lambda path, stats: stream_audio(path, sample_rate, stats=stats)


class _Counted:
    """Passes chunks through, counting samples (the decoded length, whatever the source)."""

    def __init__(self, chunks: Chunks) -> None:
        self.chunks, self.total = chunks, 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for chunk in self.chunks:
            self.total += chunk.shape[0]
            yield chunk


class _Packer:
    """Fills a preallocated [batch_size, window] array; hands out full batches."""

    def __init__(self, batch_size: int, window: int) -> None:
        self.size, self.window = batch_size, window
        self._new()

    def _new(self) -> None:
        self.waves = np.empty((self.size, self.window), dtype=np.float32)  # [B, window]
        self.index = np.empty(self.size, dtype=np.int64)
        self.starts = np.empty(self.size, dtype=np.int64)
        self.fill, self.done = 0, []

    def take(self) -> Batch:
        batch = Batch(self.waves[: self.fill], self.index[: self.fill], self.starts[: self.fill], self.done)
        self._new()
        return batch

    def add(self, file_index: int, starts: np.ndarray, wins: np.ndarray) -> Iterator[Batch]:
        pos = 0
        while pos < starts.shape[0]:
            n = min(self.size - self.fill, starts.shape[0] - pos)
            sl = slice(self.fill, self.fill + n)
            self.waves[sl], self.starts[sl] = wins[pos: pos + n], starts[pos: pos + n]
            self.index[sl] = file_index
            self.fill, pos = self.fill + n, pos + n
            if self.fill == self.size:
                yield self.take()


def iter_batches(
    paths: list,
    window: int,
    hop: int,
    batch_size: int,
    sample_rate: int,
    source: ChunkSource | None = None,
) -> Iterator[Batch]:
    """Stream batches of windows over many files, in input order.

    A file's :class:`FileDone` rides on the batch holding its last window (an empty batch when that batch
    already left), so a consumer can finish that file right after scoring the batch. Windows a failed file
    produced before its error may still be in batches; consumers drop them because the file is marked failed.

    Args:
        paths: input paths (str or bytes).
        window: samples per window (model metadata).
        hop: samples between window starts.
        batch_size: windows per batch (>= 1).
        sample_rate: decoding rate (model metadata).
        source: chunk producer, for tests; defaults to :func:`serving.audio.stream_audio`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    source = source or _default_source(sample_rate)
    packer = _Packer(batch_size, window)
    for idx, path in enumerate(paths):
        stats = DecodeStats()
        done = FileDone(idx, stats=stats)
        try:
            counted = _Counted(source(path, stats))
            for starts, wins in iter_windows(counted, window, hop):
                yield from packer.add(idx, starts, wins)
            done.samples = counted.total
        except AudioError as err:
            done.error = str(err)
        except (OSError, RuntimeError, ValueError, MemoryError) as err:  # never let one file kill the run
            done.error = f"unexpected decoding error: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        packer.done.append(done)
        if packer.fill == 0:  # its windows already left in full batches: report it now, not a batch later
            yield packer.take()
    yield packer.take()
