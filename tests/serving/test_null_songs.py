"""Song-like null queries: deterministic, bounded, and built from the record they are drawn from."""

from __future__ import annotations

import numpy as np

from serving.null_songs import SONG_S, drums_and_bass, song_like

SR = 16000


def _record(seed: int = 0) -> np.ndarray:
    t = np.arange(30 * SR) / SR
    return (0.5 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2).astype(np.float32)


def test_song_like_is_deterministic_bounded_and_long_enough() -> None:
    a = song_like(_record(), np.random.default_rng(3), SR)
    b = song_like(_record(), np.random.default_rng(3), SR)
    assert a.dtype == np.float32 and a.shape == (int(SONG_S * SR),)
    assert np.array_equal(a, b) and np.abs(a).max() <= 1.0 and np.isfinite(a).all()
    assert not np.array_equal(a, song_like(_record(), np.random.default_rng(4), SR))


def test_song_like_carries_the_record_over_a_bed() -> None:
    """The record's 440 Hz tone, moved by the speed change, stands out of the drums and bass."""
    song = song_like(_record(), np.random.default_rng(0), SR)
    spec = np.abs(np.fft.rfft(song))
    freqs = np.fft.rfftfreq(song.shape[0], 1 / SR)
    peak = freqs[np.argmax(spec * (freqs > 300))]
    assert 440 * 0.8 - 5 <= peak <= 440 * 1.25 + 5


def test_bed_has_drum_hits() -> None:
    bed = drums_and_bass(4 * SR, np.random.default_rng(1), SR)
    env = np.abs(bed).reshape(-1, SR // 100).max(axis=1)  # 10 ms envelope
    assert bed.shape == (4 * SR,) and env.max() > 5 * np.median(env)
