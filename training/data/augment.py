"""Producer-style audio transforms (numpy + scipy), seeded by a numpy ``Generator``.

Each transform exists twice: a parametric function (``change_speed(x, factor)``) used by the demo-data builder,
which records the parameters, and a ``random_*`` wrapper drawing parameters from an :class:`AugmentConfig`.
All functions take and return 1-D float32 arrays at :data:`SAMPLE_RATE`; lengths may change (speed, tempo,
chop), callers crop/loop to the window they need.

Cost matters (2 CPU cores feed training), so: filters are cached biquad sections applied with
``scipy.signal.sosfilt``; noise comes from a pre-computed table read at a random offset; time stretching is a
crude 50 %-overlap Hann overlap-add (phasey, but cheap, and real-world tempo edits are not clean either).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import soxr
from scipy import signal

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
NYQUIST_GUARD_HZ = 7600.0  # keep band edges under Nyquist (8 kHz)
OLA_FRAME = 1024  # overlap-add frame for time stretching (64 ms)
NOISE_TABLE_SECONDS = 8
EPS = 1e-12

Rng = np.random.Generator


@dataclass
class AugmentConfig:
    """Probabilities and ranges of the training augmentation.

    Attributes:
        enabled: master switch; False gives clean windows (useful for norm stats and debugging).
        record_prob: share of items built from records.csv originals (cut, transformed, mixed), when present.
        speed_prob: turntable speed change (pitch and tempo together).
        speed_max: maximal relative speed change (0.3 = x0.77..x1.3; producers repitch a lot).
        pitch_prob: pitch-only shift (resample + time stretch back).
        pitch_semitones: maximal pitch shift.
        tempo_prob: tempo-only change (time stretch).
        tempo_max: maximal relative tempo change.
        filter_prob: one of low-, high-, band-pass.
        gain_prob: gain ramp (a constant gain is undone by normalisation, a ramp is not).
        gain_db: maximal gain at either end of the ramp.
        chop_prob: cut into pieces and rearrange (records), or drop/repeat pieces (song windows).
        lofi_prob: bit-crush or sample-and-hold downsampling.
        reverb_prob: exponential-decay noise reverb.
        vinyl_prob: crackle + hiss.
        snr_db: sample-to-accompaniment power ratio range in dB for record cuts.
        other_song_prob: share of record-cut beds taken from other labels' songs (else drums/bass/noise).
        song_scale: multiplier on the probabilities above for windows of real training songs (light touch).
        background_prob: share of "no known sample" items (song audio outside the sample's span, or a
            drum/bass bed), trained towards a flat distribution so that windows without a sample do not
            outvote the ones with it when a song is scored by its best window.
    """

    enabled: bool = True
    record_prob: float = 0.5
    speed_prob: float = 0.6
    speed_max: float = 0.3
    pitch_prob: float = 0.1
    pitch_semitones: float = 2.0
    tempo_prob: float = 0.1
    tempo_max: float = 0.12
    filter_prob: float = 0.5
    gain_prob: float = 0.5
    gain_db: float = 6.0
    chop_prob: float = 0.35
    lofi_prob: float = 0.15
    reverb_prob: float = 0.15
    vinyl_prob: float = 0.15
    snr_db: tuple[float, float] = (-6.0, 12.0)
    other_song_prob: float = 0.4
    song_scale: float = 0.4
    background_prob: float = 0.1

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation at all (and no record cuts)."""
        return cls(enabled=False, record_prob=0.0, background_prob=0.0)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (tuples become lists) for checkpoints, weights files and config files."""
        data = dataclasses.asdict(self)
        data["snr_db"] = list(self.snr_db)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (older files stay readable)."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        if "snr_db" in known:
            known["snr_db"] = tuple(known["snr_db"])
        return cls(**known)


# ------------------------------------------------------------ parametric
def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch and tempo together), as a turntable does: len -> len / factor."""
    if abs(factor - 1.0) < 1e-4:
        return x
    return soxr.resample(x, SAMPLE_RATE * factor, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)


def time_stretch(x: np.ndarray, rate: float, frame: int = OLA_FRAME) -> np.ndarray:
    """Tempo-only change by Hann overlap-add at 50 % overlap: len -> about len / rate."""
    hop = frame // 2
    n_out = max(1, int(len(x) / rate) // hop - 1)
    starts = np.minimum((np.arange(n_out) * hop * rate).astype(np.int64), max(0, len(x) - frame))
    xp = np.pad(x, (0, max(0, frame - len(x))))
    window = np.hanning(frame + 1)[:frame].astype(np.float32)  # periodic: sums to 1 at 50 % overlap
    frames = xp[starts[:, None] + np.arange(frame)] * window  # [n_out, frame]
    out = np.zeros((n_out + 1) * hop, dtype=np.float32)
    even, odd = frames[0::2].reshape(-1), frames[1::2].reshape(-1)
    out[: len(even)] += even
    out[hop : hop + len(odd)] += odd
    return out


def shift_pitch(x: np.ndarray, semitones: float) -> np.ndarray:
    """Pitch-only shift: resample (pitch+tempo), then stretch back to the original length."""
    factor = 2.0 ** (semitones / 12.0)
    return time_stretch(change_speed(x, factor), 1.0 / factor)


@functools.lru_cache(maxsize=4096)
def _sos(kind: str, low: float, high: float, order: int) -> np.ndarray:
    """Cached Butterworth sections (frequencies are rounded by the caller, so the cache stays small)."""
    fc: float | list[float] = [low, high] if kind == "bandpass" else (low if kind == "highpass" else high)
    return signal.butter(order, fc, btype=kind, fs=SAMPLE_RATE, output="sos")


def _round_hz(hz: float) -> float:
    """Round to a 1/12-octave grid so filter designs are reused."""
    return float(2.0 ** (round(np.log2(max(hz, 20.0)) * 12) / 12))


def filter_audio(x: np.ndarray, kind: str, low: float = 0.0, high: float = 0.0, order: int = 2) -> np.ndarray:
    """Butterworth ``lowpass`` (cut at ``high``), ``highpass`` (at ``low``) or ``bandpass`` (low..high)."""
    low = _round_hz(low) if kind != "lowpass" else 0.0
    high = min(_round_hz(high), NYQUIST_GUARD_HZ) if kind != "highpass" else 0.0
    return signal.sosfilt(_sos(kind, low, high, order), x).astype(np.float32, copy=False)


def gain_ramp(x: np.ndarray, start_db: float, end_db: float) -> np.ndarray:
    """Linear-in-dB gain ramp over the whole signal."""
    db = np.linspace(start_db, end_db, len(x), dtype=np.float32)
    return x * np.power(np.float32(10.0), db / np.float32(20.0))


def bitcrush(x: np.ndarray, bits: int) -> np.ndarray:
    """Quantize to ``bits`` bits (relative to the peak)."""
    peak = float(np.max(np.abs(x))) + EPS
    levels = float(2 ** (bits - 1))
    return (np.round(x / peak * levels) / levels * peak).astype(np.float32)


def sample_and_hold(x: np.ndarray, factor: int) -> np.ndarray:
    """Crude downsample by ``factor`` without anti-aliasing, held back up (old samplers' grit)."""
    held = np.repeat(x[::factor], factor)[: len(x)]
    return np.pad(held, (0, len(x) - len(held)), mode="edge") if len(held) < len(x) else held


def reverb(x: np.ndarray, rng: Rng, decay_s: float, wet: float) -> np.ndarray:
    """Convolve with an exponentially decaying noise impulse response (FFT), mix ``wet`` of it."""
    n_ir = max(16, int(decay_s * SAMPLE_RATE))
    t = np.arange(n_ir, dtype=np.float32) / SAMPLE_RATE
    ir = rng.standard_normal(n_ir).astype(np.float32) * np.exp(-6.9 * t / decay_s)  # -60 dB at decay_s
    ir /= float(np.sqrt(np.sum(ir**2))) + EPS
    tail = signal.fftconvolve(x, ir)[: len(x)].astype(np.float32)
    return (1.0 - wet) * x + wet * tail


def _noise_table() -> np.ndarray:
    """White noise read at random offsets instead of drawing fresh samples per item (drawing costs ~1 ms)."""
    if not hasattr(_noise_table, "table"):
        table = np.random.default_rng(12345).standard_normal(NOISE_TABLE_SECONDS * SAMPLE_RATE)
        _noise_table.table = table.astype(np.float32)  # type: ignore[attr-defined]
    return _noise_table.table  # type: ignore[attr-defined]


def noise(rng: Rng, n: int) -> np.ndarray:
    """``n`` samples of unit-variance white noise (a slice of a fixed table at a random offset, looped)."""
    table = _noise_table()
    start = int(rng.integers(0, len(table)))
    reps = (start + n) // len(table) + 1
    return np.tile(table, reps)[start : start + n] if reps > 1 else table[start : start + n]


def vinyl(x: np.ndarray, rng: Rng, hiss_db: float, crackles_per_s: float) -> np.ndarray:
    """Add hiss at ``hiss_db`` below the signal RMS and random clicks (crackle)."""
    rms = float(np.sqrt(np.mean(x**2))) + EPS
    out = x + noise(rng, len(x)) * np.float32(rms * 10 ** (hiss_db / 20))
    count = rng.poisson(crackles_per_s * len(x) / SAMPLE_RATE)
    pos = rng.integers(0, max(1, len(x) - 8), size=count)
    amp = rng.uniform(0.5, 3.0, size=count) * rms * rng.choice([-1.0, 1.0], size=count)
    for k, decay in enumerate((1.0, -0.6, 0.3)):  # tiny ringing click
        np.add.at(out, pos + k, (amp * decay).astype(np.float32))
    return out


def mix_at_snr(sample: np.ndarray, bed: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix ``sample`` over ``bed`` (same length) so that power(sample)/power(bed) = ``snr_db``."""
    p_s, p_b = float(np.mean(sample**2)), float(np.mean(bed**2))
    if p_b < EPS or p_s < EPS:
        return sample + bed
    return sample + bed * np.float32(np.sqrt(p_s / (p_b * 10 ** (snr_db / 10))))


def peak_limit(x: np.ndarray, peak: float = 0.99) -> np.ndarray:
    """Scale down to ``peak`` when louder (never up), float32."""
    m = float(np.max(np.abs(x))) if len(x) else 0.0
    return (x * np.float32(peak / m) if m > peak else x).astype(np.float32, copy=False)


def chop(x: np.ndarray, rng: Rng, pieces: int, gap_prob: float = 0.2) -> np.ndarray:
    """Cut into ``pieces`` parts at random points and re-sequence them (in order, repeated or jumbled).

    The output has as many pieces as the input, each followed by a short silence with ``gap_prob``; piece
    edges get short fades so the cuts do not click.
    """
    pieces = max(1, min(pieces, len(x) // (SAMPLE_RATE // 8)))
    cuts = np.sort(rng.choice(np.arange(1, pieces * 4), size=pieces - 1, replace=False)) if pieces > 1 else []
    bounds = [0, *(int(c * len(x) / (pieces * 4)) for c in cuts), len(x)]
    parts = [fade(x[a:b].copy()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    out, idx = [], int(rng.integers(0, pieces))
    for _ in range(pieces):
        out.append(parts[idx])
        if rng.random() < gap_prob:
            out.append(np.zeros(int(len(parts[idx]) * rng.uniform(0.1, 0.5)), dtype=np.float32))
        roll = rng.random()
        idx = (idx + 1) % pieces if roll < 0.5 else (idx if roll < 0.7 else int(rng.integers(0, pieces)))
    return np.concatenate(out).astype(np.float32, copy=False)


def fade(x: np.ndarray, ms: float = 3.0) -> np.ndarray:
    """In-place short linear fade-in/out."""
    m = min(len(x) // 2, int(ms * SAMPLE_RATE / 1000))
    if m > 0:
        ramp = np.linspace(0.0, 1.0, m, dtype=np.float32)
        x[:m] *= ramp
        x[len(x) - m :] *= ramp[::-1]
    return x


def fix_length(x: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad (at the end) to exactly ``n`` samples."""
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def loop_to(x: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """Repeat ``x`` to fill ``n`` samples, starting ``offset`` samples into the loop."""
    if len(x) == 0:
        return np.zeros(n, dtype=np.float32)
    reps = (offset % len(x) + n) // len(x) + 1
    start = offset % len(x)
    return np.tile(x, reps)[start : start + n]


# ---------------------------------------------------------------- random
def log_uniform(rng: Rng, lo: float, hi: float) -> float:
    """Log-uniform draw in [lo, hi]."""
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def random_speed_factor(rng: Rng, max_change: float) -> float:
    """Speed factor log-uniform in [1/(1+m), 1+m]."""
    return log_uniform(rng, 1.0, 1.0 + max_change) ** float(rng.choice([-1.0, 1.0]))


def random_filter(x: np.ndarray, rng: Rng) -> np.ndarray:
    """Random low-, high- or band-pass, with ranges like producers' EQ moves."""
    kind = str(rng.choice(["lowpass", "highpass", "bandpass"]))
    if kind == "lowpass":
        return filter_audio(x, kind, high=log_uniform(rng, 600, 4000), order=int(rng.choice([2, 4])))
    if kind == "highpass":
        return filter_audio(x, kind, low=log_uniform(rng, 150, 1500), order=int(rng.choice([2, 4])))
    fc, octaves = log_uniform(rng, 300, 3000), rng.uniform(1.0, 3.0)
    return filter_audio(x, kind, low=fc / 2 ** (octaves / 2), high=fc * 2 ** (octaves / 2), order=1)


def random_lofi(x: np.ndarray, rng: Rng) -> np.ndarray:
    """Bit-crush (4-10 bits) or sample-and-hold (x2-x4)."""
    if rng.random() < 0.5:
        return bitcrush(x, int(rng.integers(4, 11)))
    return sample_and_hold(x, int(rng.integers(2, 5)))


def length_preserving(x: np.ndarray, rng: Rng, cfg: AugmentConfig, scale: float = 1.0) -> np.ndarray:
    """Transforms that keep the length: pitch shift, filter, lo-fi, gain ramp, reverb, vinyl.

    Args:
        x: float32 ``[S]``.
        rng: the item's generator.
        cfg: probabilities and ranges.
        scale: multiplier on every probability (``cfg.song_scale`` for song windows).
    """
    n = len(x)
    if rng.random() < cfg.pitch_prob * scale:
        x = fix_length(shift_pitch(x, rng.uniform(-cfg.pitch_semitones, cfg.pitch_semitones)), n)
    if rng.random() < cfg.filter_prob * scale:
        x = random_filter(x, rng)
    if rng.random() < cfg.lofi_prob * scale:
        x = random_lofi(x, rng)
    if rng.random() < cfg.gain_prob * scale:
        x = gain_ramp(x, *rng.uniform(-cfg.gain_db, cfg.gain_db, size=2))
    if rng.random() < cfg.reverb_prob * scale:
        x = reverb(x, rng, rng.uniform(0.2, 0.6), rng.uniform(0.1, 0.4))
    if rng.random() < cfg.vinyl_prob * scale:
        x = vinyl(x, rng, rng.uniform(-45.0, -25.0), rng.uniform(2.0, 30.0))
    return x


def transform_cut(x: np.ndarray, rng: Rng, cfg: AugmentConfig) -> np.ndarray:
    """Transforms for a record cut before it is looped: chop, speed, tempo, then length-preserving ones
    except vinyl (added to the whole mix by the caller)."""
    if rng.random() < cfg.chop_prob:
        x = chop(x, rng, int(rng.integers(2, 6)))
    if rng.random() < cfg.speed_prob:
        x = change_speed(x, random_speed_factor(rng, cfg.speed_max))
    if rng.random() < cfg.tempo_prob:
        x = time_stretch(x, random_speed_factor(rng, cfg.tempo_max))
    return length_preserving(x, rng, replace(cfg, vinyl_prob=0.0))
