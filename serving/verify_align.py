"""Verification of a voted candidate: log-frequency spectral peaks matched at a refined scale and offset.

Voting says "record R, played at about speed s, sits at song time t + offset". Verification checks it on the
signal itself, with a cost that depends on the song segment only, never on the catalogue:

1. the song segment the votes cover, and the record segment the vote points at (plus a margin), are turned
   into log-frequency spectrograms (numpy STFT, :data:`N_FFT`-point Hann frames every :data:`FRAME_HOP`
   samples, power summed into :data:`BANDS` log-spaced bands between :data:`F_MIN` and :data:`F_MAX` Hz, log);
2. the record segment's spectral peaks (local maxima over :data:`PEAK_FRAMES` frames and :data:`PEAK_BANDS`
   bands either way, above their band's and frame's means) are picked once, as points (time, band);
3. each hypothesis maps the points into the song: a time-scale from a fine grid around ``s`` (one catalogue
   scale step either way, finer for longer segments so that a speed error drifts less than
   :data:`TOLERANCE_FRAMES` over the segment) with the bands shifted as a turntable does, the same
   time-scales with the bands unshifted (**tempo-only**), and the voted time-scale and the record's own
   tempo with the bands shifted by :data:`PITCH_SEMITONES` semitones (**pitch-only**); each is slid over the
   song by up to :data:`MAX_LAG_FRAMES` frames. Mapping points costs a lookup per point, and a peak's cells
   over every lag are one slice of the song's band, so all hypotheses and lags are scored in a few array
   operations;
4. the score is a **spectral-peak constellation** match (the idea of audfprint and Panako, without hashing):
   the record's peaks that the song also has within :data:`TOLERANCE_FRAMES` frame and
   :data:`TOLERANCE_BANDS` band, beyond the number that chance finds at the song's local peak density
   (:data:`DENSITY_FRAMES`), in standard deviations of the chance count (:func:`z_beyond_chance`; about 0 for
   unrelated audio, whatever the number of peaks, so a hypothesis with few peaks does not win the maximum over
   thousands of hypotheses by luck; :data:`STATISTIC` ``"lift"`` ranks by the fraction found instead). Peaks
   survive what a producer adds around a sample (drums, bass and other songs fill the valleys, not the
   record's maxima), gain and EQ. On dev-plus, among the same 8 voted candidates, it ranks the true record
   first for 82.8 % / 71.7 % of test / open songs, where the normalised cross-correlation of the patches it
   replaced did 40 % / 45 % (bench/NOTES.md #21, #22); with another model, the z-score 82.8 % / 65.0 % where
   the lift did 70.6 % / 56.7 % (#25).

The best speed and lag give the refined speed and offset, hence where in the record the sample comes from.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

N_FFT = 512  # 32 ms at 16 kHz
FRAME_HOP = 256  # 16 ms at 16 kHz
BANDS = 48
F_MIN = 100.0
F_MAX = 7000.0
LOG_FLOOR = 1e-8
MAX_LAG_FRAMES = 64  # +-1 s: a vote matches a window within about one catalogue hop (0.5 s) either way
FINE_SCALE_STEPS = 4  # per side, over one catalogue scale step, at least
MAX_FINE_STEPS = 32  # per side, at most (a 20 s segment)
MIN_OVERLAP = 0.5  # of the song segment's frames
MIN_PEAKS = 8  # record peaks inside the song segment that a score needs
DENSITY_FRAMES = 8  # chance is measured over +-8 frames (+-0.13 s) of the song
TRIM_FRACTION = 0.5  # a stretch matches when its peak score is at least half the matching part's
TRIM_ROUNDS = 3
MIN_FRAMES = 4
NO_SCORE = -1.0
PITCH_SEMITONES = (-3, -2, -1, 1, 2, 3)  # pitch-only hypotheses (the producer chain's +-3 semitones)
SAME_SPEED = 1e-3  # log time-scale under which a voted speed is the record's own tempo
PEAK_FRAMES, PEAK_BANDS = 3, 2  # a peak is the maximum of its (2 * 3 + 1) frames x (2 * 2 + 1) bands
TOLERANCE_FRAMES, TOLERANCE_BANDS = 1, 1  # a record peak is found when the song has one within +-1 frame and band
MIN_VERIFY_S = 3.0  # a song segment is verified over at least this long (an occurrence, a fit's matched part)
GRID_SHIFT = FRAME_HOP // 2  # samples: the second frame grid of :func:`regrid_score`
STATISTIC = "z"  # what ranks hypotheses: "z" (:func:`z_beyond_chance`) or "lift" (:func:`beyond_chance`), bench/NOTES.md #25


@dataclass
class Alignment:
    """The verified alignment: score, speed, offset (scaled record time minus song time, seconds), and the
    part of the song segment that the record actually matches (``song_lo_s``/``song_hi_s``; None: all of it)."""

    score: float
    speed: float
    offset_s: float
    song_lo_s: float | None = None
    song_hi_s: float | None = None


@dataclass(frozen=True)
class Resolution:
    """A log-frequency spectrogram's resolution: FFT size and log-spaced bands (the hop is :data:`FRAME_HOP`)."""

    n_fft: int = N_FFT
    bands: int = BANDS


VERIFY = Resolution()  # what verification and the catalogue's stored spectra use


@functools.lru_cache(maxsize=8)
def _band_matrix(sample_rate: int, res: Resolution = VERIFY) -> np.ndarray:
    """``[n_fft // 2 + 1, bands]``: each FFT bin's weight in each log-spaced band (triangular on log f)."""
    freqs = np.fft.rfftfreq(res.n_fft, 1.0 / sample_rate)  # [K]
    top = min(F_MAX, 0.95 * sample_rate / 2)
    edges = np.geomspace(F_MIN, top, res.bands + 2)  # [bands + 2]
    logf = np.log(np.maximum(freqs, 1.0))[:, None]  # [K, 1]
    lo, mid, hi = (np.log(edges[i:i + res.bands])[None, :] for i in range(3))  # [1, bands] each
    rise = (logf - lo) / (mid - lo)
    fall = (hi - logf) / (hi - mid)
    return np.clip(np.minimum(rise, fall), 0.0, None).astype(np.float32)  # [K, bands]


def log_spectrogram(wave: np.ndarray, sample_rate: int, res: Resolution = VERIFY) -> np.ndarray:
    """Log band energies ``[T, bands]`` of ``wave`` ``[S]`` (T = frames every :data:`FRAME_HOP` samples)."""
    wave = np.asarray(wave, dtype=np.float32)  # [S]
    if wave.shape[0] < res.n_fft:
        wave = np.pad(wave, (0, res.n_fft - wave.shape[0]))
    frames = sliding_window_view(wave, res.n_fft)[::FRAME_HOP]  # [T, n_fft], a view
    window = np.hanning(res.n_fft).astype(np.float32)  # [n_fft]
    spectrum = np.fft.rfft(frames * window, axis=1)  # [T, K] complex64 (numpy >= 2 keeps single precision)
    power = spectrum.real ** 2 + spectrum.imag ** 2  # [T, K]
    return np.log(power.astype(np.float32, copy=False) @ _band_matrix(sample_rate, res) + LOG_FLOOR)  # [T, bands]


@dataclass
class SongPeaks:
    """The song side of a verification, computed once per song segment: ``found`` ``[T, B]`` (1 within
    :data:`TOLERANCE_FRAMES` and :data:`TOLERANCE_BANDS` of one of its spectral peaks, else 0), and ``chance``
    ``[T]``, the fraction of ``found`` within :data:`DENSITY_FRAMES` of each frame: the probability that a
    peak of unrelated audio lands on a found cell there (noise and drums hold denser peaks than a held chord)."""

    found: np.ndarray
    chance: np.ndarray

    @classmethod
    def of(cls, spec: np.ndarray) -> SongPeaks:
        found = _max_filter(peak_map(spec), TOLERANCE_FRAMES, TOLERANCE_BANDS)  # [T, B]
        total = np.concatenate([[0.0], np.cumsum(found.mean(axis=1))])  # [T + 1]
        t = np.arange(found.shape[0])
        lo, hi = np.maximum(0, t - DENSITY_FRAMES), np.minimum(found.shape[0], t + DENSITY_FRAMES + 1)
        return cls(found, np.minimum((total[hi] - total[lo]) / (hi - lo), 1.0 - 1e-6))


def _max_filter(x: np.ndarray, frames: int, bands: int) -> np.ndarray:
    """``x`` ``[T, B]``: each cell's maximum over ``+-frames`` x ``+-bands`` (separable; edges see less).

    Running maxima of shifted slices: whole-array ``np.maximum`` calls, several times faster than a reduction
    over a strided window axis."""
    out = x.copy()  # [T, B]
    for shift in range(1, frames + 1):
        np.maximum(out[shift:], x[:-shift], out=out[shift:])
        np.maximum(out[:-shift], x[shift:], out=out[:-shift])
    over_time = out.copy()  # [T, B]
    for shift in range(1, bands + 1):
        np.maximum(out[:, shift:], over_time[:, :-shift], out=out[:, shift:])
        np.maximum(out[:, :-shift], over_time[:, shift:], out=out[:, :-shift])
    return out


def peak_map(spec: np.ndarray) -> np.ndarray:
    """``[T, B]`` float32 1/0: the spectral peaks of ``spec``, cells that are the maximum of their
    (2 :data:`PEAK_FRAMES` + 1) x (2 :data:`PEAK_BANDS` + 1) neighbourhood and stand above their band's and
    frame's means (so a flat or silent stretch has none)."""
    centred = spec - spec.mean(axis=0, keepdims=True)  # [T, B]: each band's level (gain, EQ) removed
    centred -= centred.mean(axis=1, keepdims=True)  # each frame's loudness removed
    return ((spec >= _max_filter(spec, PEAK_FRAMES, PEAK_BANDS)) & (centred > 0)).astype(np.float32)


def beyond_chance(hits: np.ndarray, count: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """How many of ``count`` record peaks the song has too (``hits``) beyond the ``expected`` number that chance
    alone finds, as a fraction of the most there could be: 0 for unrelated audio, 1 when every peak is found;
    :data:`NO_SCORE` below :data:`MIN_PEAKS` peaks."""
    hits, count, expected = (np.asarray(x, np.float64) for x in (hits, count, expected))
    lift = (hits - expected) / np.maximum(count - expected, 1e-6)
    return np.where(count >= MIN_PEAKS, lift, NO_SCORE)


def z_beyond_chance(hits: np.ndarray, count: np.ndarray, expected: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """The hits beyond chance in standard deviations of the chance count (``variance`` = the sum of p (1 - p)
    over the peaks): the same null spread whatever the number of peaks, so a hypothesis with few peaks does not
    win the maximum by luck; :data:`NO_SCORE` below :data:`MIN_PEAKS` peaks."""
    hits, count, expected, variance = (np.asarray(x, np.float64) for x in (hits, count, expected, variance))
    return np.where(count >= MIN_PEAKS, (hits - expected) / np.sqrt(np.maximum(variance, 1e-6)), NO_SCORE)


def band_ratio(sample_rate: int) -> float:
    """Frequency ratio between neighbouring bands."""
    return (min(F_MAX, 0.95 * sample_rate / 2) / F_MIN) ** (1.0 / (BANDS + 1))


@dataclass
class Hypotheses:
    """Time-scales ``scale`` ``[H]`` (record time / song time) and band shifts ``shift`` ``[H]`` to try."""

    scale: np.ndarray
    shift: np.ndarray

    @classmethod
    def around(cls, speed: float, scale_ratio: float, frames: int, ratio: float) -> Hypotheses:
        """Turntable and tempo-only at each fine time-scale, pitch-only at ``speed``, for ``frames`` frames."""
        step = np.log(max(scale_ratio, 1.0 + 1e-6))  # one catalogue step, per side
        per_side = int(np.clip(np.ceil(step * frames / (2 * TOLERANCE_FRAMES)), FINE_SCALE_STEPS, MAX_FINE_STEPS))
        return cls.families(speed * np.exp(np.linspace(-step, step, 2 * per_side + 1)), speed, ratio)

    @classmethod
    def families(cls, fines: np.ndarray, speed: float, ratio: float) -> Hypotheses:
        """Turntable and tempo-only at each time-scale of ``fines`` ``[F]``, and pitch-only
        (:data:`PITCH_SEMITONES`) at ``speed`` and, when ``speed`` is not 1, at 1 too; bands ``ratio`` apart.

        A pitch-only shift keeps the tempo, but the windows of a record resampled to the song's pitch can win its
        votes at a turntable scale: the pitch-only shifts at the record's own tempo are tried whatever the vote
        (bench/NOTES.md #39)."""
        shifted = 2.0 ** (np.array(PITCH_SEMITONES) / 12)  # [P] pitch-only ratios
        tempos = [speed] if abs(np.log(speed)) < SAME_SPEED else [speed, 1.0]
        scale = np.concatenate([fines, fines, np.repeat(tempos, len(shifted))])  # [2F + P x tempos]
        pitch = np.concatenate([fines, np.ones_like(fines), np.tile(shifted, len(tempos))])
        return cls(scale, np.log(pitch) / np.log(ratio))


@dataclass
class _Fit:
    """The best hypothesis: its index, lag, and where the record's peaks land in the song segment."""

    score: float
    hypothesis: int
    lag: int
    rows: np.ndarray  # [P] song frame of each record peak
    cols: np.ndarray  # [P] song band of each record peak


def _best_fit(song: SongPeaks, points: tuple[np.ndarray, np.ndarray], hyps: Hypotheses,
              covered: tuple[np.ndarray, np.ndarray]) -> _Fit | None:
    """The hypothesis and lag with the best peak score (the earliest lag, then hypothesis, on a tie).
    ``points`` are the record peaks' song frames at lag 0 ``[H, P]`` (float) and bands ``[P]``; ``covered``
    the song frames where the record segment begins and ends under each hypothesis ``[H]``. Every lag is
    scored at once: a peak's found cells over all lags are one slice of the song's band (:func:`_lagged`)."""
    frames, bands = song.found.shape
    lags = np.arange(-MAX_LAG_FRAMES, MAX_LAG_FRAMES + 1)  # [L]
    rows0 = np.rint(points[0]).astype(np.int64)  # [H, P]
    cols = np.rint(points[1][None, :] + hyps.shift[:, None]).astype(np.int64)  # [H, P]
    in_band = (cols >= 0) & (cols < bands)
    usable = in_band & (rows0 >= -MAX_LAG_FRAMES) & (rows0 < frames + MAX_LAG_FRAMES)  # [H, P]
    hits, count, expected, variance = _lagged(song, rows0, cols, usable)
    overlap = (np.minimum(covered[1][:, None] + lags, frames) - np.maximum(covered[0][:, None] + lags, 0))  # [H, L]
    stat = (z_beyond_chance(hits, count, expected, variance) if STATISTIC == "z"
            else beyond_chance(hits, count, expected))  # [H, L]
    scores = np.where(overlap >= max(MIN_FRAMES, MIN_OVERLAP * frames), stat, NO_SCORE).T  # [L, H]
    at, h = np.unravel_index(int(np.argmax(scores)), scores.shape)
    if scores[at, h] <= NO_SCORE:
        return None
    rows = rows0[h] + lags[at]  # [P]
    ok = in_band[h] & (rows >= 0) & (rows < frames)
    return _Fit(float(scores[at, h]), int(h), int(lags[at]), rows[ok], cols[h][ok])


def _lagged(song: SongPeaks, rows0: np.ndarray, cols: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per hypothesis and lag ``[H, L]``: the peaks the song has (hits), the peaks inside the song (count), and
    the chance count's mean and variance. ``rows0`` ``[H, P]``: each peak's song frame at lag 0; ``cols``
    ``[H, P]``: its band; ``usable`` ``[H, P]``: the peak lands in the song at some lag (others count nothing)."""
    frames, bands = song.found.shape
    pad, width = 2 * MAX_LAG_FRAMES, 2 * MAX_LAG_FRAMES + 1
    start = np.where(usable, rows0 + MAX_LAG_FRAMES, 0)  # [H, P] where a peak's lags begin in the padded song
    found = np.pad(song.found.T.astype(np.uint8), ((0, 1), (pad, pad)))  # [B + 1, T + 2 pad], band B is empty
    lagged = sliding_window_view(found, width, axis=1)[np.where(usable, cols, bands), start]  # [H, P, L]
    hits = lagged.sum(axis=1, dtype=np.int32)  # [H, L]
    starts = frames + 2 * MAX_LAG_FRAMES
    where = (np.arange(len(start))[:, None] * starts + start)[usable]  # [N]
    per_start = np.bincount(where, minlength=len(start) * starts).reshape(len(start), starts)  # [H, S]
    frame_stats = np.stack([np.ones(frames), song.chance, song.chance * (1.0 - song.chance)])  # [3, T]
    windows = sliding_window_view(np.pad(frame_stats, ((0, 0), (pad, pad))), width, axis=1)  # [3, S, L]
    sums = per_start.astype(np.float64) @ np.concatenate(list(windows), axis=1)  # [H, 3 L]
    count, expected, variance = np.split(sums, 3, axis=1)  # [H, L] each
    return hits, count, expected, variance


def verify(song_spec: np.ndarray | SongPeaks, song_lo_s: float, record: np.ndarray, sample_rate: int,
           offset_s: float, speed: float, scale_ratio: float) -> Alignment:
    """Verify "the record played at ``speed`` sits at song time + ``offset_s``" for a song segment.

    Args:
        song_spec: :func:`log_spectrogram` of the song segment that starts at ``song_lo_s``, or its
            :class:`SongPeaks` (a caller that verifies one segment against several records computes it once).
        song_lo_s: the segment's start in the song (seconds).
        record: :func:`log_spectrogram` of the whole record ``[T_r, BANDS]`` (the catalogue stores it).
        sample_rate: the model's rate.
        offset_s: voted offset (record time / speed - song time), seconds.
        speed: voted time-scale.
        scale_ratio: the catalogue's ratio between neighbouring scales (the fine grid spans one step each way).
    """
    frame_s = FRAME_HOP / sample_rate
    song = song_spec if isinstance(song_spec, SongPeaks) else SongPeaks.of(song_spec)
    frames = song.found.shape[0]
    mid = song_lo_s + frames * frame_s / 2
    anchor = speed * (mid + offset_s)  # record time at the segment's centre
    hyps = Hypotheses.around(speed, scale_ratio, frames, band_ratio(sample_rate))
    reach = hyps.scale.max() * (frames * frame_s / 2 + (MAX_LAG_FRAMES + 2) * frame_s)
    lo = max(0, int(np.floor((anchor - reach) / frame_s)))  # record frames [lo, hi) around the anchor
    hi = min(record.shape[0], int(np.ceil((anchor + reach) / frame_s)))
    failed = Alignment(NO_SCORE, speed, offset_s)
    if hi - lo < MIN_FRAMES * speed:
        return failed
    spec, tau_lo = np.asarray(record[lo:hi], dtype=np.float32), lo * frame_s  # [T', BANDS]
    t, b = np.nonzero(peak_map(spec))  # [P] each
    inner = ((t >= PEAK_FRAMES) | (lo == 0)) & ((t < spec.shape[0] - PEAK_FRAMES) | (hi == record.shape[0]))
    t, b = t[inner], b[inner]  # a maximum at a cut edge saw only half its neighbourhood
    tau = tau_lo + t * frame_s  # [P] record time of each peak
    to_song = lambda x: ((x - anchor) / hyps.scale[:, None] + mid - song_lo_s) / frame_s  # noqa: E731
    covered = to_song(np.array([tau_lo, tau_lo + spec.shape[0] * frame_s]))  # [H, 2]
    fit = _best_fit(song, (to_song(tau), b.astype(np.float64)), hyps, (np.floor(covered[:, 0]), np.ceil(covered[:, 1])))
    if fit is None:
        return failed
    scale = float(hyps.scale[fit.hypothesis])
    first, last = matching_part(song, fit)
    return Alignment(fit.score, scale, anchor / scale - mid - fit.lag * frame_s,
                     song_lo_s + first * frame_s, song_lo_s + last * frame_s)


def matching_part(song: SongPeaks, fit: _Fit) -> tuple[int, int]:
    """Frames ``[first, last)`` of the song segment that the fitted record matches.

    Each record peak counts ``+1 - rate`` at its song frame when the song has it and ``-rate`` when it does
    not, where ``rate`` is the found fraction that a peak score of :data:`TRIM_FRACTION` x the matching
    part's means; the matching part is the run of frames with the largest total (a maximum-sum subarray), so a
    few unlucky frames inside the sample do not split it and a stretch without the record's peaks is left
    out. The part's own score sets the rate, so :data:`TRIM_ROUNDS` rounds start from the whole segment's.
    The whole segment when no run scores above zero.
    """
    frames, bands = song.found.shape
    hit = song.found.ravel()[fit.rows * bands + fit.cols]  # [P']
    hits = np.bincount(fit.rows, weights=hit, minlength=frames)  # [T]
    count = np.bincount(fit.rows, minlength=frames).astype(np.float64)  # [T]
    part = (0, frames)
    score = float(beyond_chance(hits.sum(), count.sum(), (song.chance * count).sum()))  # = fit.score for "lift"
    for _ in range(TRIM_ROUNDS):
        rate = song.chance + (1.0 - song.chance) * TRIM_FRACTION * max(score, 0.0)  # [T]
        total = np.concatenate([[0.0], np.cumsum(hits - rate * count)])  # [T + 1]
        low_before = np.minimum.accumulate(total)  # [T + 1]: the best start of a run ending at each frame
        last = int(np.argmax(total - low_before))
        if total[last] - low_before[last] <= 0:
            break
        part = (int(np.argmin(total[:last + 1])), last)
        inside = slice(part[0], last)
        score = float(beyond_chance(hits[inside].sum(), count[inside].sum(), (song.chance * count)[inside].sum()))
    return part


def verify_window(lo: float, hi: float, duration: float) -> tuple[float, float]:
    """The song segment verified for ``[lo, hi]`` (an occurrence, a fit's matched part): at least
    :data:`MIN_VERIFY_S` long, centred, within ``[0, duration]``.

    Chance correlations of short segments run high; a floor on the length keeps the null scores low.
    """
    grow = max(0.0, MIN_VERIFY_S - (hi - lo)) / 2
    lo, hi = lo - grow, hi + grow
    if lo < 0:
        lo, hi = 0.0, min(duration, hi - lo)
    if hi > duration:
        lo, hi = max(0.0, lo - (hi - duration)), duration
    return lo, hi


def matched_frames(align: Alignment, duration_s: float, sample_rate: int) -> tuple[int, int] | None:
    """The song frames ``[first, end)`` of ``align``'s matched part, widened by :func:`verify_window`; None
    without a matched part."""
    if align.song_lo_s is None or align.song_hi_s is None:
        return None
    lo, hi = verify_window(align.song_lo_s, align.song_hi_s, duration_s)
    first = int(lo * sample_rate / FRAME_HOP)
    return first, max(first + 1, int(np.ceil(hi * sample_rate / FRAME_HOP)))


def regrid_score(wave: np.ndarray, align: Alignment, record: np.ndarray, sample_rate: int,
                 scale_ratio: float) -> float:
    """``align``'s score, averaged with the same fit verified again on a second frame grid.

    The song ``wave`` ``[S]`` is framed again from sample :data:`GRID_SHIFT` on, so its frames fall half a hop
    from the first grid's, over the fit's matched part (at least :data:`MIN_VERIFY_S`), and the fit is verified
    there at its speed and offset. A peak score is a maximum over lags and time-scales of peaks rounded to
    frames: on one grid a chance fit can round its way up, or a true one down. On dev-plus the mean of the two
    grids ranks the true record first more often (bench/NOTES.md #36). ``align``'s score as it is without a
    matched part, or when the second fit fails.
    """
    frames = matched_frames(align, wave.shape[0] / sample_rate, sample_rate)
    if align.score <= NO_SCORE or frames is None:
        return align.score
    first, end = frames
    lo = first * FRAME_HOP + GRID_SHIFT
    segment = log_spectrogram(wave[lo:lo + (end - first - 1) * FRAME_HOP + N_FFT], sample_rate)  # [end - first, B]
    again = verify(segment, lo / sample_rate, record, sample_rate, align.offset_s, align.speed, scale_ratio)
    return align.score if again.score <= NO_SCORE else (align.score + again.score) / 2
