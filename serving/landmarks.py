"""Landmark candidates: triplets of spectral peaks, hashed so that speed and pitch changes keep their keys.

The embedding's k-NN misses records whose sample a producer band-limited and buried under full-band drums and
bass (bench/NOTES.md #29, #31). Spectral peaks that survive in the pass band still line up, so a second,
independent candidate source indexes them, as Panako does (Six 2021):

1. each record's log-frequency spectrogram at a fine resolution (:data:`RES`: 128 bands, 100 Hz-7 kHz, 16 ms
   frames) gives its peaks, the maxima of (2 :data:`PEAK_FRAMES` + 1) frames x (2 :data:`PEAK_BANDS` + 1) bands
   that stand above their band's and frame's means;
2. every peak and pairs of its :data:`FAN` next peaks form triplets ``(t1, f1), (t2, f2), (t3, f3)``; the key
   holds ``f2 - f1``, ``f3 - f1`` (in steps of :data:`DF_STEP` bands: a pitch shift moves all three alike), the time ratio
   ``(t2 - t1) / (t3 - t1)`` (a speed change scales all three alike) in :data:`RATIO_BINS` bins, and ``f1`` in
   coarse bins of :data:`ANCHOR_BANDS` bands; the entry keeps the record, ``t1`` and ``t3 - t1``;
3. a song's triplets are looked up with their first peak's coarse band and the ones :data:`PITCH_BANDS` away
   (turntable x0.75-1.35, pitch-only +-3 semitones); keys held by more than :data:`CROWDED` x the mean number
   of entries are skipped (stop words: sustained notes and drum hits, in every record);
4. each matching pair gives a speed (``(t3 - t1)`` in the record over the song's) and votes for (record,
   speed bin, song block of :data:`BLOCK_S`, record time at the block's start in :data:`OFFSET_BIN_S` bins):
   measured from the block's start, a speed error of one bin moves the vote by well under a bin, where
   measured from the record's start it would scatter a late sample over seconds;
5. a record's count is its best bin's votes; its place (speed, offset, song span) comes from that bin's pairs.

Numpy only. The index is a sorted key column with record, time and span columns: ``searchsorted`` finds a
key's bucket. Memory is about 3.6 KB per second of record (14 bytes an entry, ~255 entries a second), so a
catalogue keeps landmarks up to :data:`MAX_HOURS` of records (``serving.catalogue_build``); past that it
answers by the embedding alone, whose index scales to millions of windows (README "Retrieval").
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.catalogue_format import CatalogueError, file_sha256
from serving.contract import atomic_write, one_line
from serving.verify_align import FRAME_HOP, Resolution, _max_filter

RES = Resolution(n_fft=1024, bands=128)
PEAK_FRAMES, PEAK_BANDS = 6, 8
FAN = 7  # a peak pairs its next FAN peaks two by two: 28 triplets before the range checks
MIN_DT, MAX_DT = 4, 60  # frames from a record triplet's first peak to its last (64 ms .. 0.96 s)
MAX_DF = 50  # bands between a triplet's first peak and either other one
DF_STEP = 2  # bands (1.15 semitones) per step of a band difference in the key: a shifted peak rounds to the next band less often (NOTES #31)
RATIO_BINS = 12
ANCHOR_BANDS = 16  # the first peak's band, coarsely, in the key
PITCH_BANDS = 9  # the song's first peak is looked up this far either way: +-5.2 semitones
MIN_SPEED, MAX_SPEED = 0.7, 1.45  # record time over song time
SPEED_BIN = 0.06  # log speed
OFFSET_BIN_S = 0.25
BLOCK_S = 4.0
CROWDED = 25.0
CHANCE_RANKS = (2, 6)  # the records ranked 2nd to 6th by votes give a song's chance level (NOTES #38)
MAX_HOURS = 25.0  # records a catalogue keeps landmarks for (about 330 MB)
_DF_SPAN = 2 * MAX_DF + 1  # (an upper bound of the steps)
_ANCHOR_BINS = RES.bands // ANCHOR_BANDS + 1


@dataclass
class Place:
    """Where a record's best landmark bin puts it: ``speed`` (record time / song time), ``offset_s`` (record
    time / speed minus song time, as votes give it) and the song span ``song_lo_s`` .. ``song_hi_s``."""

    speed: float
    offset_s: float
    song_lo_s: float
    song_hi_s: float


@dataclass
class LandmarkVotes:
    """A song's landmark search: ``counts`` ``[R]`` (each record's best bin) and the places of the best records."""

    counts: np.ndarray
    places: dict[int, Place]

    def best(self, n: int) -> list[int]:
        """The ``n`` records with the most votes (none with no vote), most first."""
        order = np.argsort(-self.counts, kind="stable")[:n]
        return [int(r) for r in order if self.counts[r] > 0]

    def chance(self) -> float:
        """The song's chance level in square-root votes: the median square root of the counts of the records
        ranked :data:`CHANCE_RANKS` (0 with one record). Every record that shares no music with the song still
        wins a few votes, more in a large catalogue of long records (bench/NOTES.md #36, #38)."""
        ranked = np.sort(self.counts)[::-1][CHANCE_RANKS[0] - 1:CHANCE_RANKS[1]]
        return float(np.median(np.sqrt(ranked))) if ranked.size else 0.0


def peaks(spec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames and bands ``[P]`` of the spectral peaks of ``spec`` ``[T, B]``, in time order."""
    spec = np.asarray(spec, dtype=np.float32)
    centred = spec - spec.mean(axis=0, keepdims=True)  # [T, B]: each band's level removed
    centred -= centred.mean(axis=1, keepdims=True)  # each frame's loudness removed
    t, b = np.nonzero((spec >= _max_filter(spec, PEAK_FRAMES, PEAK_BANDS)) & (centred > 0))  # [P] each
    return t.astype(np.int64), b.astype(np.int64)


def _triplets(t: np.ndarray, b: np.ndarray, dt_range: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Triplets of each peak with pairs of its :data:`FAN` next ones: ``(key, first frame, span, first band)``
    ``[N]`` each, the key without the first band's bin."""
    pairs = [(a, c) for a in range(1, FAN + 1) for c in range(a + 1, FAN + 2)]
    i = np.concatenate([np.arange(max(0, t.shape[0] - c)) for _, c in pairs])  # [N0]
    j = i + np.concatenate([np.full(max(0, t.shape[0] - c), a) for a, c in pairs])
    k = i + np.concatenate([np.full(max(0, t.shape[0] - c), c) for _, c in pairs])
    span = t[k] - t[i]
    ok = ((t[j] > t[i]) & (span >= dt_range[0]) & (span <= dt_range[1]) & (np.abs(b[j] - b[i]) <= MAX_DF)
          & (np.abs(b[k] - b[i]) <= MAX_DF))
    i, j, k, span = i[ok], j[ok], k[ok], span[ok]
    ratio = np.minimum((t[j] - t[i]) * RATIO_BINS // span, RATIO_BINS)  # [N]
    key = (((b[j] - b[i] + MAX_DF) // DF_STEP) * _DF_SPAN + (b[k] - b[i] + MAX_DF) // DF_STEP) * (RATIO_BINS + 1) + ratio
    return key, t[i], span, b[i]


def record_landmarks(spec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A record's entries from its :data:`RES` spectrogram: ``(key uint32, first frame int32, span uint8)``."""
    key, first, span, band = _triplets(*peaks(spec), (MIN_DT, MAX_DT))
    return ((key * _ANCHOR_BINS + band // ANCHOR_BANDS).astype(np.uint32), first.astype(np.int32),
            span.astype(np.uint8))


def _song_landmarks(spec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A song's lookups: every triplet once per coarse band its first peak may come from (pitch moved)."""
    key, first, span, band = _triplets(*peaks(spec), (MIN_DT / MIN_SPEED, MAX_DT / MAX_SPEED))
    lo = np.maximum(band - PITCH_BANDS, 0) // ANCHOR_BANDS
    hi = np.minimum(band + PITCH_BANDS, RES.bands - 1) // ANCHOR_BANDS
    reach = [lo + o <= hi for o in range(int((hi - lo).max(initial=0)) + 1)]  # one mask per extra coarse bin
    keys = [(key * _ANCHOR_BINS + lo + o)[m] for o, m in enumerate(reach)]
    return tuple(np.concatenate(cols) for cols in (keys, [first[m] for m in reach], [span[m] for m in reach]))


class LandmarkIndex:
    """The catalogue's landmarks: sorted ``keys`` ``[n]`` with ``record``, ``first`` and ``span`` beside them."""

    def __init__(self, keys: np.ndarray | None = None, record: np.ndarray | None = None,
                 first: np.ndarray | None = None, span: np.ndarray | None = None) -> None:
        empty = keys is None
        self.keys = np.zeros(0, np.uint32) if empty else keys
        self.record = np.zeros(0, np.int32) if empty else record
        self.first = np.zeros(0, np.int32) if empty else first
        self.span = np.zeros(0, np.uint8) if empty else span
        self._pending: list[tuple[np.ndarray, ...]] = []
        self._limit: float | None = None

    @property
    def size(self) -> int:
        return int(self.keys.shape[0]) + sum(p[0].shape[0] for p in self._pending)

    def add(self, record: int, spec: np.ndarray) -> None:
        """Index record number ``record`` from its :data:`RES` spectrogram ``spec`` ``[T, 128]``."""
        key, first, span = record_landmarks(spec)
        self._pending.append((key, np.full(key.shape[0], record, np.int32), first, span))

    def _merged(self) -> None:
        if not self._pending:
            return
        cols = [np.concatenate([base, *(p[i] for p in self._pending)])
                for i, base in enumerate((self.keys, self.record, self.first, self.span))]
        order = np.argsort(cols[0], kind="stable")
        self.keys, self.record, self.first, self.span = (c[order] for c in cols)
        self._pending, self._limit = [], None

    def save(self, folder: str | os.PathLike, name: str) -> str:
        """Write the index atomically as ``folder/name`` (npz); returns its SHA-256."""
        self._merged()
        buffer = io.BytesIO()
        np.savez(buffer, keys=self.keys, record=self.record, first=self.first, span=self.span)
        data = buffer.getvalue()
        atomic_write(Path(folder) / name, lambda handle: handle.write(data))
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, folder: str | os.PathLike, name: str, sha256: str) -> LandmarkIndex:
        """Read ``folder/name``, refusing it in one line when its SHA-256 differs or its columns disagree."""
        path = Path(folder) / name
        if not path.is_file():
            raise CatalogueError(f"landmark file missing: {path}")
        if file_sha256(path) != sha256:
            raise CatalogueError(f"landmark file {path} is corrupt or truncated (SHA-256 differs); rebuild the catalogue")
        try:
            with np.load(path, allow_pickle=False) as data:
                cols = [data[c] for c in ("keys", "record", "first", "span")]
        except (OSError, ValueError, KeyError) as err:
            raise CatalogueError(f"landmark file {path} is corrupt ({one_line(err)})") from err
        if len({c.shape for c in cols}) != 1 or cols[0].ndim != 1:
            raise CatalogueError(f"landmark file {path} is corrupt (columns of different lengths)")
        return cls(*cols)

    def _crowded(self) -> float:
        """Entries above which a key is skipped: :data:`CROWDED` x the mean per distinct key."""
        if self._limit is None:
            distinct = int(np.count_nonzero(np.diff(self.keys.astype(np.int64)))) + 1 if self.keys.size else 1
            self._limit = CROWDED * self.keys.shape[0] / distinct
        return self._limit

    def search(self, spec: np.ndarray, records: int, sample_rate: int, exclude: int | None = None,
               places: int = 8) -> LandmarkVotes:
        """Vote the song (its :data:`RES` spectrogram ``[T, 128]``) over ``records`` records; ``exclude``: a
        record that may not be voted for (calibration's leave-one-out); the best ``places`` records get a
        :class:`Place`."""
        self._merged()
        q_key, q_first, q_span = _song_landmarks(spec)
        lo = np.searchsorted(self.keys, q_key.astype(np.uint32), "left")  # [Q]
        count = np.searchsorted(self.keys, q_key.astype(np.uint32), "right") - lo
        count[count > self._crowded()] = 0
        query = np.repeat(np.arange(q_key.shape[0]), count)  # [M]
        entry = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(query.shape[0])  # [M]
        speed = self.span[entry] / q_span[query]  # [M] record time over song time
        ok = (speed >= MIN_SPEED) & (speed <= MAX_SPEED)
        if exclude is not None:
            ok &= self.record[entry] != exclude
        pairs = _Pairs(self.record[entry[ok]].astype(np.int64), q_first[query[ok]], self.first[entry[ok]], speed[ok],
                       FRAME_HOP / sample_rate)
        return pairs.votes(records, places)


@dataclass
class _Pairs:
    """Matching (song triplet, record triplet) pairs: ``record``, song frame, record frame, speed ``[M]`` each."""

    record: np.ndarray
    song: np.ndarray
    ref: np.ndarray
    speed: np.ndarray
    frame_s: float

    def _bins(self, half: float, ds: int, do: int) -> np.ndarray:
        """Each pair's bin key (record, speed bin, song block, record time at the block's start) ``[M]``, for
        one of the 8 staggered grids (half a block, and the bin below in speed and in offset)."""
        frame_s = self.frame_s
        sbin = np.floor(np.log(self.speed) / SPEED_BIN).astype(np.int64)  # [M]
        centre = np.exp((sbin + 0.5) * SPEED_BIN)
        block = np.floor(self.song * frame_s / BLOCK_S + half).astype(np.int64)  # [M]
        start = (block - half) * BLOCK_S / frame_s  # the block's first song frame
        at = np.floor((self.ref - centre * (self.song - start)) * frame_s / OFFSET_BIN_S).astype(np.int64) - do
        return (((self.record << 6) | (sbin - ds + 32)) << 44) | (np.clip(block, 0, (1 << 14) - 1) << 30) | \
            np.clip(at + (1 << 20), 0, (1 << 30) - 1)

    def votes(self, records: int, places: int) -> LandmarkVotes:
        counts = np.zeros(records)
        best_bin = np.zeros(records, np.int64)
        best_grid = np.zeros(records, np.int64)
        grids = [(h, ds, do) for h in (0.0, 0.5) for ds in (0, 1) for do in (0, 1)]
        bins = []
        for g, grid in enumerate(grids):
            key = self._bins(*grid)
            bins.append(key)
            uniq, n = np.unique(key, return_counts=True)
            owner = uniq >> 50
            order = np.lexsort((n, owner))
            top = order[np.r_[owner[order][1:] != owner[order][:-1], True]] if order.size else order  # per record
            better = n[top] > counts[owner[top]]
            counts[owner[top][better]] = n[top][better]
            best_bin[owner[top][better]], best_grid[owner[top][better]] = uniq[top][better], g
        found = LandmarkVotes(counts, {})
        for r in found.best(places):
            found.places[r] = self._place(bins[best_grid[r]] == best_bin[r])
        return found

    def _place(self, member: np.ndarray) -> Place:
        frame_s = self.frame_s
        speed = float(np.exp(np.mean(np.log(self.speed[member]))))
        song = self.song[member] * frame_s
        offset = float(np.median(self.ref[member] * frame_s / speed - song))
        return Place(speed, offset, float(song.min()), float(song.max()))

