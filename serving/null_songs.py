"""Song-like null queries for open-set calibration: a record's excerpt used as a producer would use it.

An "open" song (one whose sample is not in the catalogue) is a loop of some record, sped up or slowed down,
band-limited, and mixed under drums and bass. Calibrating on *clean* record excerpts overstates what such a
song scores, since a clean excerpt of one record can look much like another record, while a song's own
drums and bass pull the raw score down. The null therefore holds the same kind of query: a leave-one-out
excerpt of a catalogue record, processed like this, searched with that record excluded. Its score
distribution is then that of songs sampling music outside the catalogue.

Numpy only (``serving`` imports no training code); the drum and bass bed is a small synthesiser of its own.
Every draw comes from the caller's generator, so a catalogue calibrates deterministically.
"""

from __future__ import annotations

import numpy as np

SONG_S = 20.0  # seconds per null song (about a sampled passage of a song)
PIECE_S = (2.0, 6.0)  # the sampled piece's length
SPEED = (0.8, 1.25)
SNR_DB = (-3.0, 12.0)  # sample over bed
BPM = (75.0, 110.0)
BAND_HZ = ((80.0, 400.0), (1500.0, 7000.0))  # random high-pass and low-pass corners
FADE_S = 0.01


def song_like(record: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A :data:`SONG_S`-second song looping a processed piece of ``record`` over drums and bass.

    Args:
        record: mono float32 record.
        rng: the draws.
        sample_rate: samples per second.

    Returns:
        float32 [SONG_S * sample_rate], peak <= 1.
    """
    n = int(SONG_S * sample_rate)
    piece = _piece(record, rng, sample_rate)
    loop = np.resize(piece, n)  # [n]: the piece repeated, as a loop-based song uses it
    bed = drums_and_bass(n, rng, sample_rate)
    snr = rng.uniform(*SNR_DB)
    gain = _rms(loop) / (_rms(bed) * 10 ** (snr / 20) + 1e-9)
    mix = loop + gain * bed
    return (mix / max(1.0, float(np.abs(mix).max()))).astype(np.float32)


def _piece(record: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    length = int(rng.uniform(*PIECE_S) * sample_rate)
    start = int(rng.integers(0, max(1, record.shape[0] - length)))
    piece = record[start:start + length].astype(np.float64)
    piece = _speed(piece, rng.uniform(*SPEED))
    piece = _band(piece, rng, sample_rate)
    fade = min(piece.shape[0] // 2, int(FADE_S * sample_rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        piece[:fade] *= ramp
        piece[-fade:] *= ramp[::-1]
    return piece


def _speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (pitch follows, as on a turntable); linear interpolation."""
    out = max(2, int(x.shape[0] / factor))
    return np.interp(np.linspace(0, x.shape[0] - 1, out), np.arange(x.shape[0]), x)


def _band(x: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A random band-pass in the frequency domain (a producer's filter, without phase niceties)."""
    lo, hi = rng.uniform(*BAND_HZ[0]), rng.uniform(*BAND_HZ[1])
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.shape[0], 1.0 / sample_rate)
    spec[(freqs < lo) | (freqs > hi)] = 0.0
    return np.fft.irfft(spec, x.shape[0])


def drums_and_bass(n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A boom-bap bar loop: kick, snare and hats on a 16-step grid, and a sine bass on the beats."""
    step = int(60.0 / rng.uniform(*BPM) / 4 * sample_rate)  # one sixteenth note
    t = np.arange(step * 2) / sample_rate
    kick = np.sin(2 * np.pi * (50 + 60 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
    snare = rng.standard_normal(t.shape[0]) * np.exp(-t * 25) * 0.6
    hat = rng.standard_normal(t.shape[0]) * np.exp(-t * 120) * 0.25
    bass_hz = 40.0 + 40.0 * rng.random(4)
    out = np.zeros(n + step * 2)
    for i, pos in enumerate(range(0, n, step)):
        beat = i % 16
        hits = [hat] + ([kick] if beat in (0, 10) else []) + ([snare] if beat in (4, 12) else [])
        for hit in hits:
            out[pos:pos + hit.shape[0]] += hit
        if beat % 4 == 0:
            out[pos:pos + t.shape[0]] += 0.4 * np.sin(2 * np.pi * bass_hz[beat // 4] * t) * np.exp(-t * 3)
    return out[:n]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-12))
