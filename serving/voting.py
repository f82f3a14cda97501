"""Time-consistent voting over k-NN hits: which records, at which speed, at which offset, in which song windows.

A song window at song time ``t`` whose neighbour is the record window at record time ``tau``, indexed at
time-scale ``s``, votes for the key ``(record, scale, round((tau / s - t) / bin))``: ``tau / s`` is the time in
the record played at speed ``s``, so all the windows of one occurrence of a sample share one offset. Two
adjacent bins are counted together (an offset near a bin edge splits its votes), and each song window counts
once per key. The bin is the hop, but at least :data:`MIN_BIN_S` (a sample played at a speed between two
indexed scales drifts slowly across bins). A key needs :data:`MIN_VOTES` windows (and at least
:data:`MIN_AGREE_S` seconds of them) that follow each other, with gaps of at most :data:`MAX_GAP_S`, to become
an :class:`Occurrence`.

Samples loop, so one record can be hit at several offsets: overlapping occurrences of the same record (the
same song windows, found at neighbouring scales or bins) are merged greedily, best first, and a record keeps
its best :data:`MAX_OCCURRENCES` occurrences (verification and the loop's spans use them). Records are ranked
by their best occurrence's votes, then by the sum over the kept ones: summing first favoured records that
many windows hit at scattered offsets (dev-plus: the true record among the 6 candidates for 90.0 % of test
songs instead of 87.2 %, first by votes for 60.6 % instead of 43.3 %; bench/NOTES.md #27).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_VOTES = 3
MIN_AGREE_S = 1.0
MAX_GAP_S = 1.0
MIN_BIN_S = 0.25
MAX_OCCURRENCES = 8
OVERLAP_MERGE = 0.5  # an occurrence sharing more than half its windows with a better one is the same one


@dataclass
class Occurrence:
    """One time-consistent run of votes for a record."""

    record: int
    scale_index: int
    offset_s: float  # scaled record time minus song time, averaged over the votes
    windows: np.ndarray  # song window indices, ascending
    speed: float | None = None  # an exact time-scale (a landmark place), else the scale's

    @property
    def votes(self) -> int:
        return int(self.windows.shape[0])


@dataclass
class RecordVotes:
    """A candidate record and its occurrences, best first."""

    record: int
    votes: int  # the best occurrence's
    occurrences: list[Occurrence]
    total: int = 0  # summed over the kept occurrences (the tie-break)


def min_votes_for(hop_s: float) -> int:
    """Windows an occurrence needs at this hop: :data:`MIN_VOTES`, and at least :data:`MIN_AGREE_S` of them."""
    return max(MIN_VOTES, int(np.ceil(MIN_AGREE_S / hop_s - 1e-9)))


def bin_for(hop_s: float) -> float:
    """The offset bin at this hop."""
    return max(hop_s, MIN_BIN_S)


def _runs(windows: np.ndarray, max_gap: int) -> list[np.ndarray]:
    cuts = np.flatnonzero(np.diff(windows) > max_gap) + 1
    return np.split(windows, cuts)


BIN_SPAN = 1 << 32  # bins are packed with (record, scale) into one int64 key


def _keys(song_t: np.ndarray, ids: np.ndarray, table: np.ndarray, scales: np.ndarray, sample_rate: int,
          bin_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened votes: ``(key [v], window [v], offset_s [v])``; key = (record * S + scale) * 2^32 + bin pair."""
    valid = ids >= 0  # [m, k]
    window = np.broadcast_to(np.arange(ids.shape[0])[:, None], ids.shape)[valid]  # [h]
    rows = table[ids[valid]]  # [h, 3]
    offset = rows[:, 2] / sample_rate / scales[rows[:, 1]] - song_t[window]  # [h]
    first_bin = np.floor(offset / bin_s).astype(np.int64) + BIN_SPAN // 2  # [h], >= 0
    base = (rows[:, 0] * scales.shape[0] + rows[:, 1]) * BIN_SPAN  # [h]
    keys = np.concatenate([base + first_bin, base + first_bin - 1])  # [2h]: the bin and the one below
    return keys, np.concatenate([window, window]), np.concatenate([offset, offset])


def occurrences(song_t: np.ndarray, sims: np.ndarray, ids: np.ndarray, table: np.ndarray, scales: np.ndarray,
                sample_rate: int, hop_s: float, min_votes: int | None = None) -> list[Occurrence]:
    """Every key's runs of at least ``min_votes`` consecutive windows, most votes first.

    Args:
        song_t: ``[m]`` song window start times (seconds).
        sims, ids: ``[m, k]`` k-NN similarities and ids (``-1`` = none).
        table: the catalogue's id table ``[n, 3]``.
        scales: ``[S]`` the catalogue's time-scales.
        sample_rate: rate of the table's starts.
        hop_s: the song's hop (sets the bin, the gaps and the default ``min_votes``).
        min_votes: windows a run needs (default :func:`min_votes_for`).
    """
    if ids.size == 0 or not (ids >= 0).any():
        return []
    min_votes = min_votes_for(hop_s) if min_votes is None else min_votes
    max_gap = max(1, int(round(MAX_GAP_S / hop_s)))
    keys, window, offset = _keys(song_t, ids, table, scales, sample_rate, bin_for(hop_s))
    order = np.lexsort((window, keys))  # by key, then window
    keys, window, offset = keys[order], window[order], offset[order]
    first_of_pair = np.r_[True, (keys[1:] != keys[:-1]) | (window[1:] != window[:-1])]  # one vote per window
    uniq, counts = np.unique(keys[first_of_pair], return_counts=True)
    keep = np.isin(keys, uniq[counts >= min_votes])  # only these keys can hold a run: the loop stays short
    keys, window, offset = keys[keep], window[keep], offset[keep]
    if keys.size == 0:
        return []
    bounds = np.flatnonzero(np.diff(keys)) + 1
    found = []
    for group_win, group_off, key in zip(np.split(window, bounds), np.split(offset, bounds),
                                         keys[np.r_[0, bounds]], strict=True):
        record, scale = divmod(int(key) // BIN_SPAN, scales.shape[0])
        for run in _runs(np.unique(group_win), max_gap):
            if run.shape[0] >= min_votes:  # group_win is sorted: the run's votes are one slice of it
                lo = np.searchsorted(group_win, run[0], side="left")
                hi = np.searchsorted(group_win, run[-1], side="right")
                found.append(Occurrence(record, scale, float(np.median(group_off[lo:hi])), run))
    found.sort(key=lambda o: -o.votes)
    return found


def _shared(windows: np.ndarray, other: np.ndarray) -> float:
    """The fraction of ``windows`` (sorted, unique) that ``other`` (sorted, unique) holds too."""
    if windows[-1] < other[0] or other[-1] < windows[0]:
        return 0.0
    at = np.minimum(np.searchsorted(other, windows), other.shape[0] - 1)  # [n]
    return float(np.count_nonzero(other[at] == windows)) / windows.shape[0]


def by_record(found: list[Occurrence], candidates: int) -> list[RecordVotes]:
    """Merge overlapping occurrences per record; rank records by their best occurrence's votes, then by the sum
    (best ``candidates``)."""
    kept: dict[int, list[Occurrence]] = {}
    for occ in found:
        same = kept.setdefault(occ.record, [])
        if len(same) >= MAX_OCCURRENCES:
            continue
        if any(_shared(occ.windows, other.windows) > OVERLAP_MERGE for other in same):
            continue
        same.append(occ)
    ranked = [RecordVotes(rec, occs[0].votes, occs, sum(o.votes for o in occs)) for rec, occs in kept.items()]
    ranked.sort(key=lambda r: (-r.votes, -r.total, r.record))
    return ranked[:candidates]


def placed(record: int, place: tuple[float, float], span: tuple[float, float], song_t: np.ndarray, window_s: float,
           scales: np.ndarray) -> Occurrence:
    """Where another source placed ``record`` (speed, offset) over the song span ``(lo, hi)`` seconds: an
    occurrence over the song windows that overlap the span (the nearest one when none does), at that exact speed
    and the catalogue scale nearest to it."""
    (speed, offset), (lo, hi) = place, span
    inside = (song_t <= hi) & (song_t + window_s >= lo)  # [m]
    windows = np.flatnonzero(inside) if inside.any() else np.array([int(np.argmin(np.abs(song_t - lo)))])
    scale = int(np.argmin(np.abs(np.log(scales / speed))))
    return Occurrence(record, scale, offset, windows, speed)
