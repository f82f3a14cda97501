"""Verification of a voted candidate: log-frequency spectrogram cross-correlation at a refined scale and offset.

Voting says "record R, played at about speed s, sits at song time t + offset". Verification checks it on the
signal itself, with a cost that depends on the song segment only, never on the catalogue:

1. the song segment the votes cover, and the record segment the vote points at (plus a margin), are turned
   into log-frequency spectrograms (numpy STFT, :data:`N_FFT`-point Hann frames every :data:`FRAME_HOP`
   samples, power summed into :data:`BANDS` log-spaced bands between :data:`F_MIN` and :data:`F_MAX` Hz, log);
2. the record segment is resampled (soxr) to play at ``s``; its spectrogram is warped (time compressed, bands
   shifted) to each speed of a fine grid around ``s`` (one catalogue scale step either way), and slid over
   the song segment by up to :data:`MAX_LAG_FRAMES` frames. Producers also change tempo without pitch and
   pitch without tempo, so two more families of hypotheses are tried on the unresampled record's
   spectrogram: **tempo-only** (time compressed by each fine speed, bands unshifted) and **pitch-only** (the
   voted time-scale, bands shifted by :data:`PITCH_SEMITONES` semitones either way);
3. the score is the best normalised cross-correlation: both patches have each band's mean over time removed
   (gain and fixed EQ do not count), then ``sum(a b) / (|a| |b|)``, in [-1, 1].

The best speed and lag give the refined speed and offset, hence where in the record the sample comes from.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soxr
from numpy.lib.stride_tricks import sliding_window_view

N_FFT = 512  # 32 ms at 16 kHz
FRAME_HOP = 256  # 16 ms at 16 kHz
BANDS = 48
F_MIN = 100.0
F_MAX = 7000.0
LOG_FLOOR = 1e-8
MAX_LAG_FRAMES = 8  # the voted offset, averaged over the votes, is good to a few frames
FINE_SCALE_STEPS = 4  # per side, over one catalogue scale step
MIN_OVERLAP = 0.5  # of the song segment's frames
TRIM_CHUNK_FRAMES = 31  # ~0.5 s: the unit in which the matching part of the segment is found
TRIM_FRACTION = 0.5  # a chunk matches when its correlation is at least half the segment's
MIN_FRAMES = 4
NO_SCORE = -1.0
RESAMPLE_QUALITY = "HQ"
PITCH_SEMITONES = (-3, -2, -1, 1, 2, 3)  # pitch-only hypotheses (the producer chain's +-3 semitones)


@dataclass
class Alignment:
    """The verified alignment: score, speed, offset (scaled record time minus song time, seconds), and the
    part of the song segment that the record actually matches (``song_lo_s``/``song_hi_s``; None: all of it)."""

    score: float
    speed: float
    offset_s: float
    song_lo_s: float | None = None
    song_hi_s: float | None = None


@functools.lru_cache(maxsize=4)
def _band_matrix(sample_rate: int) -> np.ndarray:
    """``[N_FFT // 2 + 1, BANDS]``: each FFT bin's weight in each log-spaced band (triangular on log f)."""
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate)  # [K]
    top = min(F_MAX, 0.95 * sample_rate / 2)
    edges = np.geomspace(F_MIN, top, BANDS + 2)  # [BANDS + 2]
    logf = np.log(np.maximum(freqs, 1.0))[:, None]  # [K, 1]
    lo, mid, hi = (np.log(edges[i:i + BANDS])[None, :] for i in range(3))  # [1, BANDS] each
    rise = (logf - lo) / (mid - lo)
    fall = (hi - logf) / (hi - mid)
    return np.clip(np.minimum(rise, fall), 0.0, None).astype(np.float32)  # [K, BANDS]


def log_spectrogram(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log band energies ``[T, BANDS]`` of ``wave`` ``[S]`` (T = frames every :data:`FRAME_HOP` samples)."""
    wave = np.asarray(wave, dtype=np.float32)  # [S]
    if wave.shape[0] < N_FFT:
        wave = np.pad(wave, (0, N_FFT - wave.shape[0]))
    frames = sliding_window_view(wave, N_FFT)[::FRAME_HOP]  # [T, N_FFT], a view
    window = np.hanning(N_FFT).astype(np.float32)  # [N_FFT]
    spectrum = np.fft.rfft(frames * window, axis=1)  # [T, K] complex64 (numpy >= 2 keeps single precision)
    power = spectrum.real ** 2 + spectrum.imag ** 2  # [T, K]
    return np.log(power.astype(np.float32, copy=False) @ _band_matrix(sample_rate) + LOG_FLOOR)  # [T, BANDS]


def _normalised(patch: np.ndarray) -> np.ndarray | None:
    centred = patch - patch.mean(axis=0, keepdims=True)  # [T, B]: each band's level (gain, EQ) removed
    centred -= centred.mean(axis=1, keepdims=True)  # each frame's loudness removed: spectral shape only
    norm = float(np.sqrt((centred * centred).sum()))
    return centred / norm if norm > 0 else None


def best_lag(song: np.ndarray, record: np.ndarray, base: int, max_lag: int) -> tuple[float, int]:
    """Best NCC of ``song`` ``[T, B]`` against ``record`` ``[R, B]`` placed at frame ``base + lag``.

    Returns:
        ``(score, lag)``; :data:`NO_SCORE` when no lag overlaps enough.
    """
    frames = song.shape[0]
    if base - max_lag >= 0 and base + max_lag + frames <= record.shape[0]:  # every lag overlaps in full
        return _best_full_lag(song, record[base - max_lag:base + max_lag + frames], max_lag)
    best, best_lag_ = NO_SCORE, 0
    for lag in range(-max_lag, max_lag + 1):
        start = base + lag
        lo, hi = max(0, -start), min(frames, record.shape[0] - start)
        if hi - lo < max(MIN_FRAMES, MIN_OVERLAP * frames):
            continue
        a, b = _normalised(song[lo:hi]), _normalised(record[start + lo:start + hi])
        if a is None or b is None:
            continue
        score = float((a * b).sum())
        if score > best:
            best, best_lag_ = score, lag
    return best, best_lag_


def _best_full_lag(song: np.ndarray, record: np.ndarray, max_lag: int) -> tuple[float, int]:
    """:func:`best_lag` when every lag overlaps the whole song patch, all lags at once.

    The song patch ``a`` is double-centred (zero mean per band and per frame), so ``sum(a * centred(W))`` equals
    ``sum(a * W)`` for each record window ``W``, and ``|centred(W)|^2 = |W|^2 - B |frame means|^2 - T |band
    means|^2 + T B mean^2`` comes from running sums over the record's frames. Same scores as the per-lag loop.
    """
    a = _normalised(song)
    if a is None:
        return NO_SCORE, 0
    frames, bands = song.shape
    lags = record.shape[0] - frames + 1
    num = np.einsum("ltb,tb->l", sliding_window_view(record, frames, axis=0).transpose(0, 2, 1), a)  # [L]
    rec = record.astype(np.float64)  # [R, B]
    frame_mean = rec.mean(axis=1)  # [R]

    def window_sum(x: np.ndarray) -> np.ndarray:  # sums over every window of `frames` frames: [L, ...]
        c = np.concatenate([np.zeros((1, *x.shape[1:])), np.cumsum(x, axis=0)])
        return c[frames:frames + lags] - c[:lags]

    band_mean = window_sum(rec) / frames  # [L, B]
    norm2 = (window_sum(np.square(rec).sum(axis=1)) - bands * window_sum(np.square(frame_mean))
             - frames * np.square(band_mean).sum(axis=1) + frames * bands * np.square(band_mean.mean(axis=1)))
    ok = norm2 > 1e-9  # [L]: a flat window has no shape to correlate
    if not ok.any():
        return NO_SCORE, 0
    scores = np.where(ok, num / np.sqrt(np.where(ok, norm2, 1.0)), NO_SCORE)  # [L]
    best = int(np.argmax(scores))
    return float(scores[best]), best - max_lag


def warp(spec: np.ndarray, factor: float, band_ratio: float, pitch: float | None = None) -> np.ndarray:
    """``spec`` ``[R, B]`` as if its audio played ``factor`` times faster: time compressed, bands shifted up.

    Playing faster divides durations by ``factor`` and multiplies frequencies by it, which on log-spaced bands
    is a shift by ``log(factor) / log(band_ratio)`` bands; ``pitch`` (a frequency ratio) replaces that shift
    for a tempo change that keeps (``1.0``) or sets the pitch on its own. Linear interpolation on both axes
    (edges held).
    """
    pitch = factor if pitch is None else pitch
    if abs(factor - 1.0) < 1e-9 and abs(pitch - 1.0) < 1e-9:
        return spec
    frames = max(1, int((spec.shape[0] - 1) / factor) + 1)
    src_t = np.minimum(np.arange(frames) * factor, spec.shape[0] - 1)  # [R']
    lo = np.floor(src_t).astype(np.int64)
    hi = np.minimum(lo + 1, spec.shape[0] - 1)
    frac = (src_t - lo)[:, None].astype(np.float32)
    timed = spec[lo] * (1 - frac) + spec[hi] * frac  # [R', B]
    src_b = np.clip(np.arange(spec.shape[1]) - np.log(pitch) / np.log(band_ratio), 0, spec.shape[1] - 1)  # [B]
    blo = np.floor(src_b).astype(np.int64)
    bhi = np.minimum(blo + 1, spec.shape[1] - 1)
    bfrac = (src_b - blo)[None, :].astype(np.float32)
    return timed[:, blo] * (1 - bfrac) + timed[:, bhi] * bfrac  # [R', B]


def band_ratio(sample_rate: int) -> float:
    """Frequency ratio between neighbouring bands."""
    return (min(F_MAX, 0.95 * sample_rate / 2) / F_MIN) ** (1.0 / (BANDS + 1))


def verify(song_spec: np.ndarray, song_lo_s: float, record: np.ndarray, sample_rate: int, offset_s: float,
           speed: float, scale_ratio: float) -> Alignment:
    """Verify "the record played at ``speed`` sits at song time + ``offset_s``" for a song segment.

    The record segment is resampled once, at ``speed``; the other speeds of the fine grid are derived from its
    spectrogram by :func:`warp`, so a verification costs one resample and one STFT.

    Args:
        song_spec: :func:`log_spectrogram` of the song segment that starts at ``song_lo_s``.
        song_lo_s: the segment's start in the song (seconds).
        record: the whole decoded record ``[S]`` at ``sample_rate``.
        sample_rate: the model's rate.
        offset_s: voted offset (record time / speed - song time), seconds.
        speed: voted time-scale.
        scale_ratio: the catalogue's ratio between neighbouring scales (the fine grid spans one step each way).
    """
    frame_s = FRAME_HOP / sample_rate
    half_len = song_spec.shape[0] * frame_s / 2
    mid = song_lo_s + half_len
    anchor = speed * (mid + offset_s)  # record time at the segment's centre
    step = np.log(max(scale_ratio, 1.0 + 1e-6))
    fines = speed * np.exp(np.linspace(-step, step, 2 * FINE_SCALE_STEPS + 1))
    reach = fines.max() * (half_len + (MAX_LAG_FRAMES + 2) * frame_s)
    tau_lo = max(0.0, anchor - reach)
    tau_hi = min(record.shape[0] / sample_rate, anchor + reach)
    best, best_fit = Alignment(NO_SCORE, speed, offset_s), None
    if tau_hi - tau_lo < MIN_FRAMES * frame_s * speed:
        return best
    segment = record[int(tau_lo * sample_rate):int(np.ceil(tau_hi * sample_rate))]
    scaled = soxr.resample(segment, sample_rate, sample_rate / speed, quality=RESAMPLE_QUALITY)
    base = log_spectrogram(scaled, sample_rate)  # [R, B]; frame 0 at scaled time tau_lo / speed
    ratio = band_ratio(sample_rate)
    for fine, spec in _hypotheses(base, speed, fines, ratio):
        fine_offset = anchor / fine - mid
        start = int(round((song_lo_s + fine_offset - tau_lo / fine) / frame_s))
        score, lag = best_lag(song_spec, spec, start, MAX_LAG_FRAMES)
        if score > best.score:
            best, best_fit = Alignment(score, float(fine), float(fine_offset + lag * frame_s)), (spec, start + lag)
    if best_fit is not None:
        first, last = matching_part(song_spec, *best_fit, best.score)
        best.song_lo_s, best.song_hi_s = song_lo_s + first * frame_s, song_lo_s + last * frame_s
    return best


def _hypotheses(base: np.ndarray, speed: float, fines: np.ndarray,
                ratio: float) -> Iterator[tuple[float, np.ndarray]]:
    """``(time-scale, spectrogram)`` of every hypothesis, each with frame 0 at record time ``tau_lo`` / scale.

    ``base`` is the record segment resampled to play at ``speed``, so its pitch is ``speed`` times the
    record's; the tempo-only and pitch-only families shift its bands back (by ``1 / speed``), then as wanted.
    """
    for fine in fines:  # turntable: pitch follows speed
        yield float(fine), warp(base, fine / speed, ratio)
    for fine in fines:  # tempo only: the pitch stays
        yield float(fine), warp(base, fine / speed, ratio, pitch=1.0 / speed)
    for semitones in PITCH_SEMITONES:  # pitch only, at the voted tempo
        yield speed, warp(base, 1.0, ratio, pitch=2.0 ** (semitones / 12) / speed)


def matching_part(song: np.ndarray, record: np.ndarray, start: int, score: float) -> tuple[int, int]:
    """Frames ``[first, last)`` of ``song`` that match ``record`` placed at ``start``: the longest run of
    :data:`TRIM_CHUNK_FRAMES`-frame chunks correlating at least :data:`TRIM_FRACTION` of ``score``."""
    frames = song.shape[0]
    edges = list(range(0, frames, TRIM_CHUNK_FRAMES)) + [frames]
    good = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        a_lo, a_hi = max(lo, -start), min(hi, record.shape[0] - start)
        a = _normalised(song[a_lo:a_hi]) if a_hi - a_lo >= MIN_FRAMES else None
        b = _normalised(record[start + a_lo:start + a_hi]) if a is not None else None
        good.append(b is not None and float((a * b).sum()) >= TRIM_FRACTION * score)
    best_run, run_start = (0, frames), None
    longest = 0
    for i, ok in enumerate(good + [False]):
        if ok and run_start is None:
            run_start = i
        elif not ok and run_start is not None:
            if i - run_start > longest:
                longest, best_run = i - run_start, (edges[run_start], edges[i])
            run_start = None
    return best_run
