"""Music-like synthetic clips for speed runs and top-1 agreement.

Random noise would make every variant's argmax agree trivially (or flip at random); clips with tonal
harmony, a bass line and drums exercise the frontend and the encoder the way real music does.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
PEAK = 0.8  # peak amplitude after normalisation, like mastered music below full scale
MIN_BPM, MAX_BPM = 80.0, 140.0
PARTIALS = 5  # harmonics per tonal note
A4_HZ = 440.0


def _note_hz(midi: np.ndarray) -> np.ndarray:
    return A4_HZ * 2.0 ** ((midi - 69.0) / 12.0)


def _tone(hz: float, n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """One harmonic note with a decaying envelope."""
    t = np.arange(n, dtype=np.float32) / sr  # [n]
    amps = rng.uniform(0.2, 1.0, PARTIALS) / np.arange(1, PARTIALS + 1)  # [P]
    k = np.arange(1, PARTIALS + 1, dtype=np.float32)[:, None]  # [P, 1]
    wave = (amps[:, None] * np.sin(2 * np.pi * hz * k * t[None, :])).sum(0)  # [n]
    attack = np.minimum(1.0, t / 0.01)
    return (wave * attack * np.exp(-t * rng.uniform(1.5, 6.0))).astype(np.float32)


def _drum(kind: str, n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / sr  # [n]
    if kind == "kick":
        phase = 2 * np.pi * (50.0 * t + 80.0 * (1 - np.exp(-t * 30.0)) / 30.0)
        return (np.sin(phase) * np.exp(-t * 12.0)).astype(np.float32)
    noise = rng.standard_normal(n).astype(np.float32)
    decay = 25.0 if kind == "snare" else 80.0
    if kind == "hat":
        noise = np.diff(noise, prepend=0.0)  # crude high-pass
    return (0.5 * noise * np.exp(-t * decay)).astype(np.float32)


def music_clip(samples: int, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """One clip: chords + bass + kick/snare/hat pattern at a random tempo and key.

    Returns:
        float32 waveform [samples] with peak ``PEAK``.
    """
    out = np.zeros(samples, dtype=np.float32)  # [S]
    beat = int(sr * 60.0 / rng.uniform(MIN_BPM, MAX_BPM))
    root = int(rng.integers(45, 60))
    scale = np.array([0, 2, 3, 5, 7, 8, 10])  # natural minor
    for bar_start in range(0, samples, 4 * beat):
        chord = root + scale[(rng.integers(0, 7) + np.array([0, 2, 4])) % 7]  # [3]
        n = min(4 * beat, samples - bar_start)
        for hz in _note_hz(chord + 12):
            out[bar_start : bar_start + n] += 0.3 * _tone(float(hz), n, rng, sr)
        out[bar_start : bar_start + n] += 0.5 * _tone(float(_note_hz(np.array(chord[0]))), n, rng, sr)
    for i, start in enumerate(range(0, samples, beat // 2)):
        n = min(beat, samples - start)
        kind = "kick" if i % 4 == 0 else "snare" if i % 4 == 2 else "hat"
        out[start : start + n] += _drum(kind, n, rng, sr)
    return (PEAK * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def music_clips(count: int, samples: int, seed: int = 0) -> np.ndarray:
    """``count`` independent clips, deterministic for a seed.

    Returns:
        float32 array [count, samples].
    """
    rng = np.random.default_rng(seed)
    return np.stack([music_clip(samples, rng) for _ in range(count)])  # [N, S]
