"""Training windows (song windows for scoring are ``serving.contract.song_windows``).

:class:`TrainWindows` is a map-style torch ``Dataset`` of ``(waveform float32 [S], label)``. Item ``i`` of epoch
``e`` draws everything from ``numpy.random.default_rng([seed, e, i])``, so DataLoader workers and DDP ranks
reproduce exactly the same items whatever the worker count. Call :meth:`TrainWindows.set_epoch` before each
epoch (with non-persistent workers, so the workers see the new epoch).

An item:

1. picks a label (a per-epoch permutation of ``index % num_labels``: labels are balanced);
2. with probability ``augment.record_prob``, when records.csv gave the label's original sample: cuts it, applies
   producer transforms (chop, speed, tempo, pitch, filter, lo-fi, gain, reverb), loops it over the window and
   mixes it over a bed (another label's song, away from that song's sample when the manifest says where it
   is, or synthesized drums + bass) at a random sample-to-accompaniment ratio, sometimes with vinyl noise;
3. otherwise takes a window of one of the label's train songs centred on a random point of the span where the
   sample sounds (``start_s``..``end_s``; the whole song when unknown), lightly augmented;
4. with probability ``augment.background_prob`` the item is instead a window *without* any sample: song
   audio outside the sample's span, or a synthesized drum + bass bed. Its label is :data:`BACKGROUND`
   (``-1``); the loss trains it towards a flat distribution over the labels.

Audio is decoded once at construction (int16 in memory, half the size of float32) and shared copy-on-write
with forked workers.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from training.data import augment as A
from training.data import synth
from training.data.audio import SAMPLE_RATE, read_audio
from training.data.manifest import Manifest, SongEntry

logger = logging.getLogger(__name__)

INT16_SCALE = 32767.0
DECODE_THREADS = 2
BED_COUNT = 16  # synthesized drum+bass beds made once per dataset
BED_EXTRA_S = 6.0  # beds are this much longer than a window, read at random offsets
MIN_CUT_S = 1.0  # shortest cut of a record's sample
PARTIAL_PROB = 0.15  # record-cut windows where the sample starts/stops inside the window
OTHER_SONG_MIN_SNR_DB = 0.0  # a bed from another song may hold another sample: keep ours on top
EPOCH_SIZE_PER_SONG = 8
LABEL_ORDER_KEY = 0x5EED
BACKGROUND = -1  # label of a window that holds no known sample
BACKGROUND_FROM_SONG_PROB = 0.7  # else from a drum/bass bed
BED_GAIN_DB = (-12.0, 0.0)  # level of a bed used as a background window


def _to_int16(x: np.ndarray) -> np.ndarray:
    """Compact in-memory storage."""
    return np.round(np.clip(x, -1.0, 1.0) * INT16_SCALE).astype(np.int16)


def _to_float(x: np.ndarray) -> np.ndarray:
    """Back to float32 in [-1, 1]."""
    return x.astype(np.float32) * np.float32(1.0 / INT16_SCALE)


@dataclass
class _Song:
    """A decoded train song (int16) and where its sample sounds, in samples."""

    wave: np.ndarray
    label: int
    start: int
    end: int


def _decode_all(paths: list, sample_rate: int) -> list[np.ndarray]:
    """Decode files in a small thread pool (libsndfile and soxr release the GIL)."""
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        return list(pool.map(lambda p: read_audio(p, sample_rate), paths))


def _make_song(entry: SongEntry, wave: np.ndarray, label: int, sample_rate: int) -> _Song:
    """Attach the sample's span (clipped to the song) to a decoded song."""
    n = len(wave)
    start = 0 if entry.start_s is None else min(n - 1, int(entry.start_s * sample_rate))
    end = n if entry.end_s is None else max(start + 1, min(n, int(entry.end_s * sample_rate)))
    return _Song(wave=_to_int16(wave), label=label, start=max(0, start), end=end)


def _read(wave: np.ndarray, start: int, length: int) -> np.ndarray:
    """``length`` float32 samples of an int16 wave from ``start`` (zero-padded past either end)."""
    a, b = max(0, start), min(len(wave), start + length)
    out = _to_float(wave[a:b]) if b > a else np.zeros(0, dtype=np.float32)
    if len(out) == length:
        return out
    return np.pad(out, (a - start, length - len(out) - (a - start)))


class TrainWindows(Dataset):
    """Augmented training windows drawn from a manifest's train split (see the module docstring).

    Args:
        manifest: a loaded manifest (only ``train`` songs and ``records`` are used).
        window_samples: output length ``S`` (the model's window).
        seed: base seed.
        augment: augmentation config; ``None`` = defaults, ``AugmentConfig.off()`` = clean song windows.
        epoch_size: items per epoch (default: 8 per train song).
        sample_rate: audio rate in Hz.
    """

    def __init__(self, manifest: Manifest, window_samples: int, seed: int = 0,
                 augment: A.AugmentConfig | None = None, epoch_size: int | None = None,
                 sample_rate: int = SAMPLE_RATE) -> None:
        if window_samples <= 0:
            raise ValueError(f"window_samples must be > 0, got {window_samples}")
        self.labels = list(manifest.labels)
        self.window = window_samples
        self.seed = seed
        self.augment = augment if augment is not None else A.AugmentConfig()
        self.sample_rate = sample_rate
        index = manifest.label_index()
        train = manifest.split("train")
        waves = _decode_all([e.path for e in train], sample_rate)
        self.songs = [_make_song(e, w, index[e.sample], sample_rate) for e, w in zip(train, waves, strict=True)]
        self.by_label: list[list[int]] = [[] for _ in self.labels]
        for i, song in enumerate(self.songs):
            self.by_label[song.label].append(i)
        wanted = [(index[s], p) for s, p in sorted(manifest.records.items()) if s in index]
        rec_waves = _decode_all([p for _, p in wanted], sample_rate)
        self.records: dict[int, np.ndarray] = {k: w for (k, _), w in zip(wanted, rec_waves, strict=True)}
        self._outside = self._outside_spans([str(e.path) for e in train])
        self.beds = self._make_beds() if self.augment.enabled and (self.records or self._wants_background()) else []
        self.epoch_size = epoch_size if epoch_size is not None else EPOCH_SIZE_PER_SONG * len(self.songs)
        self.epoch = 0
        self._order = self._label_order()
        logger.info("TrainWindows: %d songs, %d labels, %d records, %d items/epoch, window %d",
                    len(self.songs), len(self.labels), len(self.records), self.epoch_size, window_samples)

    def _make_beds(self) -> list[np.ndarray]:
        """Synthesized drum + bass loops used as accompaniment under record cuts."""
        rng = np.random.default_rng([self.seed, 0xBED])
        n = self.window + int(BED_EXTRA_S * self.sample_rate)
        beds = []
        for _ in range(BED_COUNT):
            bpm = float(rng.uniform(75, 110))
            mix = synth.drum_loop(rng, n, bpm, float(rng.uniform(0.0, 0.3)), self.sample_rate)
            mix = mix + 10 ** (rng.uniform(-9, -2) / 20) * synth.bass_line(rng, n, bpm, sr=self.sample_rate)
            beds.append(mix.astype(np.float32))
        return beds

    def _outside_spans(self, paths: list[str]) -> list[tuple[int, int, int]]:
        """``(song, first start, last start)`` of every window that fits outside *all* sample spans of a song
        (a song listed once per record it samples has several)."""
        spans_of: dict[str, list[tuple[int, int]]] = {}
        first_row: dict[str, int] = {}
        for i, (path, song) in enumerate(zip(paths, self.songs, strict=True)):
            spans_of.setdefault(path, []).append((song.start, song.end))
            first_row.setdefault(path, i)
        out = []
        for path, spans in spans_of.items():
            i, edge = first_row[path], 0
            for start, end in sorted(spans) + [(len(self.songs[first_row[path]].wave),) * 2]:
                if start - self.window >= edge:
                    out.append((i, edge, start - self.window))
                edge = max(edge, end)
        return out

    def _wants_background(self) -> bool:
        return self.augment.enabled and self.augment.background_prob > 0

    def _label_order(self) -> np.ndarray:
        """Balanced, shuffled label per index for the current epoch."""
        perm = np.random.default_rng([self.seed, self.epoch, LABEL_ORDER_KEY]).permutation(self.epoch_size)
        return perm % len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (items of different epochs differ; same epoch = same items)."""
        self.epoch = int(epoch)
        self._order = self._label_order()

    def __len__(self) -> int:
        return self.epoch_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.epoch_size:
            raise IndexError(f"index {index} out of range for {self.epoch_size} items")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        label = int(self._order[index])
        cfg = self.augment
        if self._wants_background() and rng.random() < cfg.background_prob:
            x, label = self._background_item(rng), BACKGROUND
        elif cfg.enabled and label in self.records and rng.random() < cfg.record_prob:
            x = self._record_item(label, rng)
        else:
            x = self._song_item(label, rng)
        x = A.peak_limit(A.fix_length(x, self.window))  # [S]
        return torch.from_numpy(np.ascontiguousarray(x)), label

    def _song_item(self, label: int, rng: np.random.Generator) -> np.ndarray:
        """A window of a train song of ``label`` centred in the sample's span, lightly augmented."""
        cfg = self.augment
        song = self.songs[self.by_label[label][int(rng.integers(0, len(self.by_label[label])))]]
        scale = cfg.song_scale if cfg.enabled else 0.0
        factor = 1.0
        if rng.random() < cfg.speed_prob * scale:
            factor = A.random_speed_factor(rng, cfg.speed_max)
        length = int(round(self.window * factor))
        centre = int(rng.integers(song.start, song.end))
        start = min(max(0, centre - length // 2), max(0, len(song.wave) - length))
        x = _read(song.wave, start, length)  # [length]
        if factor != 1.0:
            x = A.fix_length(A.change_speed(x, factor), self.window)
        return A.length_preserving(x, rng, cfg, scale) if scale > 0 else x

    def _background_item(self, rng: np.random.Generator) -> np.ndarray:
        """A window holding no known sample: song audio outside its span, else a bed, lightly augmented."""
        cfg, n = self.augment, self.window
        if self._outside and (not self.beds or rng.random() < BACKGROUND_FROM_SONG_PROB):
            song, a, b = self._outside[int(rng.integers(0, len(self._outside)))]
            x = _read(self.songs[song].wave, int(rng.integers(a, b + 1)), n)  # [S]
        else:
            bed = self.beds[int(rng.integers(0, len(self.beds)))]
            start = int(rng.integers(0, len(bed) - n + 1))
            x = bed[start : start + n] * np.float32(10 ** (rng.uniform(*BED_GAIN_DB) / 20))  # [S]
        return A.length_preserving(x, rng, cfg, cfg.song_scale)

    def _record_item(self, label: int, rng: np.random.Generator) -> np.ndarray:
        """A cut of the label's original sample, transformed, looped and mixed over other material."""
        cfg, n, rec = self.augment, self.window, self.records[label]
        length = int(rng.uniform(min(MIN_CUT_S * self.sample_rate, len(rec)), len(rec) + 1))
        offset = int(rng.integers(0, len(rec) - length + 1))
        cut = A.transform_cut(rec[offset : offset + length].copy(), rng, cfg)
        if rng.random() < 0.5:  # loops of a beat-cut sample often leave a short gap
            cut = np.pad(cut, (0, int(len(cut) * rng.uniform(0.0, 0.3))))
        sample = A.loop_to(A.fade(cut), n, int(rng.integers(0, max(1, len(cut)))))
        if rng.random() < PARTIAL_PROB:  # window straddles where the sample enters or leaves
            edge = int(rng.uniform(0.2, 0.6) * n)
            if rng.random() < 0.5:
                sample[:edge] = 0.0
            else:
                sample[n - edge :] = 0.0
        bed, min_snr = self._bed(label, rng)
        snr = rng.uniform(max(cfg.snr_db[0], min_snr), max(cfg.snr_db[1], min_snr))
        x = A.mix_at_snr(sample, bed, snr)
        if rng.random() < cfg.vinyl_prob:
            x = A.vinyl(x, rng, rng.uniform(-45.0, -25.0), rng.uniform(2.0, 30.0))
        return x

    def _other_song(self, label: int, rng: np.random.Generator) -> _Song | None:
        """A random train song of another label (None when there is no other label)."""
        if len(self.labels) < 2:
            return None
        other = int(rng.integers(0, len(self.labels) - 1))
        other += other >= label  # uniform over the other labels
        songs = self.by_label[other]
        return self.songs[songs[int(rng.integers(0, len(songs)))]]

    def _bed(self, label: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """Accompaniment for a record cut and the lowest sample-to-bed ratio it allows."""
        n = self.window
        song = self._other_song(label, rng) if rng.random() < self.augment.other_song_prob else None
        if song is not None:
            outside = [(0, song.start - n), (song.end, len(song.wave) - n)]
            outside = [(a, b) for a, b in outside if b >= a]
            if outside and (song.start > 0 or song.end < len(song.wave)):
                a, b = outside[int(rng.integers(0, len(outside)))]
                return _read(song.wave, int(rng.integers(a, b + 1)), n), self.augment.snr_db[0]
            start = int(rng.integers(0, max(1, len(song.wave) - n + 1)))
            return _read(song.wave, start, n), OTHER_SONG_MIN_SNR_DB
        if self.beds and rng.random() < 0.85:
            bed = self.beds[int(rng.integers(0, len(self.beds)))]
            start = int(rng.integers(0, len(bed) - n + 1))
            return bed[start : start + n] + A.noise(rng, n) * np.float32(10 ** (rng.uniform(-40, -20) / 20)), \
                self.augment.snr_db[0]
        return A.noise(rng, n), self.augment.snr_db[0]
