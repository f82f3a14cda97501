"""Where in a candidate record a song segment sits: a coarse spectral-peak search over the whole record.

Votes name the right record more often than the right place in it: an embedding trained to tell records apart
maps many windows of one record close together, so the voted offsets of a true candidate can all be wrong
(dev-plus: for 65 of the 209 songs whose candidates hold the true record, no voted occurrence points at the
sampled segment; bench/NOTES.md #28). The verifier only looks +-1 s around a vote, so such a candidate scores
at chance. This search proposes the offset from the signal instead, at a cost that grows with the record's
length but never with the catalogue:

1. the record's spectral peaks (:func:`~serving.verify_align.peak_map`) are pooled into coarse frames of
   :data:`COARSE` spectrogram frames (64 ms) and dilated by one coarse frame and one band (:class:`RecordMap`,
   computed once per record);
2. the song segment's own peaks are mapped into record time under each hypothesis: a time-scale from
   :func:`speeds` (``0.75 .. 1.35``, steps small enough that the drift over :data:`SEARCH_S` stays within the
   dilation) with the bands shifted as a turntable does, the same time-scales with the bands unshifted
   (tempo-only), and the pitch-only shifts of :data:`~serving.verify_align.PITCH_SEMITONES` at speed 1;
3. each hypothesis is slid over every coarse lag of the record: the peaks found there, beyond what the record's
   local peak density gives by chance, in standard deviations (the verifier's statistic);
4. the best hypothesis and lag is a proposal ``(speed, offset)`` that :func:`~serving.verify_align.verify`
   then refines and scores like a voted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from serving.verify_align import MIN_PEAKS, Hypotheses, _max_filter, band_ratio, peak_map

COARSE = 4  # spectrogram frames per coarse frame (64 ms at 16 kHz)
SEARCH_S = 4.0  # at most this much of the segment (its middle) is searched
MIN_SPEED, MAX_SPEED = 0.75, 1.35
SPEED_STEP = 1.04  # drift over SEARCH_S / 2 at a half step: 2 % x 2 s = 40 ms, within the dilation
DILATE_COARSE = 1  # coarse frames a record peak is widened by, either way (pooling already spans 64 ms)
DENSITY_COARSE = 4  # chance is the record's peak density within +-4 coarse frames


def speeds() -> np.ndarray:
    """The time-scales searched ``[S]``."""
    count = int(np.ceil(np.log(MAX_SPEED / MIN_SPEED) / np.log(SPEED_STEP))) + 1
    return np.geomspace(MIN_SPEED, MAX_SPEED, count)


@dataclass
class RecordMap:
    """A record as the search sees it: ``found`` ``[B + 1, T_c]`` uint8, band-major (band B is empty), 1 within
    one coarse frame and band of a spectral peak; ``chance`` ``[T_c]``, the found fraction near each frame."""

    found: np.ndarray
    chance: np.ndarray

    @classmethod
    def of(cls, spec: np.ndarray) -> RecordMap:
        peaks = peak_map(np.asarray(spec, dtype=np.float32))  # [T, B]
        frames = -(-peaks.shape[0] // COARSE) * COARSE
        pooled = np.pad(peaks, ((0, frames - peaks.shape[0]), (0, 0))).reshape(-1, COARSE, peaks.shape[1]).max(axis=1)
        found = _max_filter(pooled, DILATE_COARSE, 1)  # [T_c, B]
        total = np.concatenate([[0.0], np.cumsum(found.mean(axis=1))])  # [T_c + 1]
        t = np.arange(found.shape[0])
        lo, hi = np.maximum(0, t - DENSITY_COARSE), np.minimum(found.shape[0], t + DENSITY_COARSE + 1)
        chance = np.minimum((total[hi] - total[lo]) / (hi - lo), 1.0 - 1e-6)  # [T_c]
        return cls(np.pad(found.T.astype(np.uint8), ((0, 1), (0, 0))), chance)


@dataclass
class Proposal:
    """The best place found: ``speed`` (record time / song time), ``offset_s`` (record time / speed minus song
    time, as votes give it) and its coarse ``score``."""

    speed: float
    offset_s: float
    score: float


def propose(song_spec: np.ndarray, song_lo_s: float, record: RecordMap, sample_rate: int,
            frame_hop: int) -> Proposal | None:
    """Where the song segment (log spectrogram ``song_spec`` ``[T, B]`` starting at ``song_lo_s``) best sits in
    ``record``; None when the segment has fewer than :data:`~serving.verify_align.MIN_PEAKS` peaks."""
    frame_s = frame_hop / sample_rate
    keep = min(song_spec.shape[0], int(SEARCH_S / frame_s))
    first = (song_spec.shape[0] - keep) // 2
    t, b = np.nonzero(peak_map(song_spec[first:first + keep]))  # [P] each
    if t.shape[0] < MIN_PEAKS:
        return None
    bands, frames = record.found.shape[0] - 1, record.found.shape[1]
    hyps = Hypotheses.families(speeds(), 1.0, band_ratio(sample_rate))
    scale, shift = hyps.scale, -hyps.shift  # the record's peaks map to the song by shift: the song's map back
    rows = np.floor(scale[:, None] * t[None, :] / COARSE).astype(np.int64)  # [H, P] record coarse frame at lag 0
    cols = np.rint(b[None, :] + shift[:, None]).astype(np.int64)  # [H, P]
    cols = np.where((cols >= 0) & (cols < bands), cols, bands)  # out of band: the empty band
    reach = int(rows.max()) + 1
    padded = np.pad(record.found, ((0, 0), (reach, reach)))  # [B + 1, T_c + 2 reach]
    width = frames + reach  # lags -reach .. T_c - 1
    hits = sliding_window_view(padded, width, axis=1)[cols, rows].sum(axis=1, dtype=np.int32)  # [H, L]
    stats = np.pad(np.stack([record.chance, record.chance * (1 - record.chance)]), ((0, 0), (reach, reach)))
    counts = np.stack([np.bincount(r[c < bands], minlength=reach) for r, c in zip(rows, cols, strict=True)])  # [H, reach]
    windows = sliding_window_view(stats, width, axis=1)  # [2, reach + 1, L]
    expected, variance = (counts.astype(np.float64) @ windows[i][:reach] for i in range(2))  # [H, L] each
    z = (hits - expected) / np.sqrt(np.maximum(variance, 1e-6))  # [H, L]
    h, lag = np.unravel_index(int(np.argmax(z)), z.shape)
    lag_s = (lag - reach) * COARSE * frame_s  # record time of the searched part's first frame
    speed = float(scale[h])
    return Proposal(speed, lag_s / speed - (song_lo_s + first * frame_s), float(z[h, lag]))
