"""Deterministic test signals for verification: the edge windows, and longer signal "songs" (chord
progressions) for when no real audio is at hand.

Edge signals (always in the parity pool): white noise, digital silence, a chord of sines driven far past full
scale and hard-clipped, and a logarithmic chirp over the whole band. They are not music and do not pretend to
be: without real audio the report says ``test signals``, and a WARNING says so (``verify_inputs``).
"""

from __future__ import annotations

import numpy as np

SEED = 1234
NOISE_STD = 0.3
CHORD_HZ = (220.0, 277.18, 329.63)  # A major
CHORD_AMPLITUDE = 0.25  # per tone, before the clipping gain
CLIP_GAIN = 8.0  # drives the chord far past full scale before hard clipping
CHIRP_LOW_HZ = 50.0
CHIRP_HIGH_HZ = 7000.0  # below Nyquist at 16 kHz
CHIRP_AMPLITUDE = 0.5
EDGE_KINDS = ("noise", "silence", "clipping", "chirp")
SIGNAL_SONGS = 8
SIGNAL_SONG_SECONDS = 12.0
OCTAVE = 12  # semitones
SEMITONE = 2 ** (1 / OCTAVE)
SEGMENT_SECONDS = 2.0  # the chord changes this often in a signal song
PROGRESSION_STEP = 5  # semitones between the songs' first chords (a fourth)
PROGRESSION_LEAP = 7  # semitones from one chord to the next (a fifth)
PEAK = 0.8
TINY = 1e-12


def white_noise(n: int, seed: int = SEED, std: float = NOISE_STD) -> np.ndarray:
    """Gaussian noise, clipped to [-1, 1]: [n] float32."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal(n) * std, -1.0, 1.0).astype(np.float32)  # [n]


def chord(n: int, sample_rate: int, freqs: tuple[float, ...] = CHORD_HZ, gain: float = 1.0) -> np.ndarray:
    """A chord of sines times ``gain``, hard-clipped to [-1, 1]: [n] float32."""
    t = np.arange(n) / sample_rate  # [n]
    wave = sum(CHORD_AMPLITUDE * np.sin(2 * np.pi * f * t) for f in freqs)  # [n]
    return np.clip(gain * wave, -1.0, 1.0).astype(np.float32)  # [n]


def chirp(n: int, sample_rate: int, low: float = CHIRP_LOW_HZ, high: float = CHIRP_HIGH_HZ) -> np.ndarray:
    """A logarithmic sweep from ``low`` to ``high`` Hz over ``n`` samples: [n] float32."""
    t = np.arange(n) / sample_rate  # [n]
    duration = max(n / sample_rate, 1.0 / sample_rate)
    rate = np.log(high / low) / duration
    phase = 2 * np.pi * low * np.expm1(rate * t) / rate  # [n]
    return (CHIRP_AMPLITUDE * np.sin(phase)).astype(np.float32)  # [n]


def edge_windows(window: int, sample_rate: int) -> tuple[np.ndarray, list[str]]:
    """Noise, silence, full-scale clipping and a chirp: [4, window] float32 and their kinds."""
    rows = [white_noise(window), np.zeros(window, np.float32), chord(window, sample_rate, gain=CLIP_GAIN),
            chirp(window, sample_rate)]
    return np.stack(rows), list(EDGE_KINDS)  # [4, window]


def signal_song(index: int, sample_rate: int, seconds: float = SIGNAL_SONG_SECONDS) -> np.ndarray:
    """Test signal ``index``: a chord of sines transposed every :data:`SEGMENT_SECONDS` (a fixed progression),
    peak-normalised to :data:`PEAK`: [S] float32. Deterministic; different indices start elsewhere in it.

    Chords only, on purpose: noise and sweeps are already edge windows, and mixing them in puts a random
    fixture model's windows on its decision boundaries, where the agreement bar would judge the fixture.
    """
    n = int(seconds * sample_rate)
    segment = int(SEGMENT_SECONDS * sample_rate)
    parts = []
    for k, start in enumerate(range(0, n, segment)):
        shift = SEMITONE ** ((index * PROGRESSION_STEP + k * PROGRESSION_LEAP) % OCTAVE - OCTAVE // 2)
        parts.append(chord(min(segment, n - start), sample_rate, tuple(f * shift for f in CHORD_HZ)))
    wave = np.concatenate(parts)  # [S]
    return (PEAK * wave / max(float(np.abs(wave).max()), TINY)).astype(np.float32)  # [S]


def signal_songs(sample_rate: int, count: int = SIGNAL_SONGS) -> list[tuple[str, np.ndarray]]:
    """``count`` named test-signal songs ``(name, wave [S])``."""
    return [(f"test-signal-{i}", signal_song(i, sample_rate)) for i in range(count)]
