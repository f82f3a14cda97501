"""Embed a whole decoded signal with the exported graph: windows every hop, batched, non-finite rows dropped."""

from __future__ import annotations

import logging

import numpy as np

from serving.contract import window_starts
from serving.session import ModelSession

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 32


def cut(wave: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """Windows ``[n, window]`` at ``starts`` (zero-padded past the end)."""
    out = np.zeros((starts.shape[0], window), dtype=np.float32)  # [n, window]
    for row, start in enumerate(starts):
        piece = wave[start:start + window]
        out[row, :piece.shape[0]] = piece
    return out


def embed_wave(session: ModelSession, wave: np.ndarray, hop: int,
               batch_size: int = DEFAULT_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Window starts and embeddings of ``wave`` ``[S]``, by :func:`serving.contract.window_starts`.

    Windows whose embedding is not finite (e.g. digital silence through a graph that normalises a zero vector)
    are dropped: they can neither vote nor be indexed.

    Returns:
        ``(starts [n] int64, embeddings [n, dim] float32)``.
    """
    window = session.metadata.window_samples
    starts = window_starts(int(wave.shape[0]), window, hop)  # [n]
    parts = []
    for lo in range(0, starts.shape[0], batch_size):
        _, emb = session.run(cut(wave, starts[lo:lo + batch_size], window))  # [b, dim]
        parts.append(np.asarray(emb, dtype=np.float32))
    emb = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)  # [n, dim]
    finite = np.isfinite(emb).all(axis=1) & (np.abs(emb).sum(axis=1) > 0)  # [n]
    return starts[finite], np.ascontiguousarray(emb[finite])
