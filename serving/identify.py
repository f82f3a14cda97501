"""The identify pipeline: paths -> batched windows -> ONNX Runtime -> one :class:`SongResult` per path.

Decoding runs in a background thread (ORT releases the GIL while it computes), so reading and resampling the
next files overlaps inference on the current batch. Results come out in input order, each as soon as its last
window is scored, so a consumer can stream them. Every path gets exactly one result: the same path given twice
is scored twice (output lines up one-to-one with the arguments).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from serving.contract import ModelMetadata, warn_repairs
from serving.matches import MatchOptions, SongResult, default_threshold, effective_threshold, match_song
from serving.prefetch import prefetched
from serving.session import ModelSession
from serving.windows import Batch, FileDone, iter_batches

logger = logging.getLogger(__name__)

PREFETCH_BATCHES = 2


@dataclass
class IdentifyOptions:
    """Options of one identify run. ``hop_s=None`` uses the model's default hop."""

    hop_s: float | None = None
    batch_size: int = 16
    match: MatchOptions = field(default_factory=MatchOptions)
    prefetch: bool = True


def display_path(path: str | bytes | os.PathLike) -> str:
    """Printable form of a path: undecodable bytes of non-UTF-8 names become ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def hop_samples(session: ModelSession, hop_s: float | None) -> int:
    """Hop in samples: ``hop_s`` seconds, or the model's default; at least one sample."""
    meta = session.metadata
    if hop_s is None:
        return meta.hop_samples
    if not hop_s > 0:
        raise ValueError(f"--hop must be > 0 seconds, got {hop_s}")
    return max(1, int(round(hop_s * meta.sample_rate)))


def _split_by_file(batch: Batch, probs: np.ndarray, acc: dict[int, list]) -> None:
    """Append each file's (starts, probs) slice; file indices in a batch are non-decreasing."""
    cuts = np.flatnonzero(np.diff(batch.file_index)) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, batch.file_index.shape[0]], strict=True):
        acc.setdefault(int(batch.file_index[lo]), []).append((batch.starts[lo:hi], probs[lo:hi]))


def _finish(done: FileDone, parts: list, path: str, session: ModelSession, opts: IdentifyOptions) -> SongResult:
    if done.stats is not None:
        warn_repairs(path, done.stats)
    if done.error is not None:
        return SongResult(path, error=done.error)
    starts = np.concatenate([s for s, _ in parts]) if parts else np.zeros(0, np.int64)  # [N]
    probs = np.concatenate([p for _, p in parts]) if parts else None  # [N, C]
    return song_result(path, done.samples, starts, probs, session.metadata, opts.match)


def song_result(path: str, samples: int, starts: np.ndarray, probs: np.ndarray | None, meta: ModelMetadata,
                match: MatchOptions) -> SongResult:
    """The answer for one decoded song from its window scores; ``identify`` and ``ast-serve http`` share it.

    Args:
        path: the name reported in the result.
        samples: decoded length at the model's rate.
        starts: [N] window starts in samples, ascending.
        probs: [N, C] window probabilities (None when no window was scored).
        meta: the model's metadata (labels, rate, window).
        match: top-k, threshold, timeline.
    """
    duration = samples / meta.sample_rate  # exact; rounded once, at output (SongResult.to_dict)
    if probs is None or starts.shape[0] == 0:
        return SongResult(path, duration, error="no windows were scored")
    if not np.isfinite(probs).all():
        return SongResult(path, duration, error="model produced non-finite scores")
    match = replace(match, threshold=effective_threshold(match.threshold, default_threshold(meta.raw)))
    matches, timeline = match_song(probs, starts, duration, meta.labels, meta.window_s, meta.sample_rate, match)
    return SongResult(path, duration, matches, None, timeline)


def _score(session: ModelSession, batch: Batch, acc: dict[int, list], failed: dict[int, str]) -> None:
    if batch.waves.shape[0] == 0:
        return
    try:
        probs, _ = session.run(batch.waves)  # [n, C]
    except Exception as err:  # an ORT runtime failure costs this batch's files, not the run
        message = f"inference failed: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}"
        for idx in np.unique(batch.file_index):
            failed.setdefault(int(idx), message)
        return
    if not np.isfinite(probs).all():
        for idx in np.unique(batch.file_index[~np.isfinite(probs).all(axis=1)]):
            failed.setdefault(int(idx), "model produced non-finite scores")
    _split_by_file(batch, probs, acc)


def identify(
    session: ModelSession, paths: list, options: IdentifyOptions | None = None
) -> Iterator[SongResult]:
    """Score every path; yield one :class:`SongResult` per path, in input order.

    Args:
        session: a validated model session.
        paths: input paths (str or bytes; non-UTF-8 names allowed).
        options: hop, batch size, match options.
    """
    opts = options or IdentifyOptions()
    meta = session.metadata
    batches = iter_batches(list(paths), meta.window_samples, hop_samples(session, opts.hop_s),
                           opts.batch_size, meta.sample_rate)
    if opts.prefetch:
        batches = prefetched(batches, PREFETCH_BATCHES, "ast-serve-decode")
    acc: dict[int, list] = {}
    failed: dict[int, str] = {}
    for batch in batches:
        _score(session, batch, acc, failed)
        for done in batch.done:
            batch_error = failed.pop(done.index, None)
            if done.error is None and batch_error is not None:
                done.error = batch_error
            yield _finish(done, acc.pop(done.index, []), display_path(paths[done.index]), session, opts)
