"""Augmentation transforms: finite, float32, right length, deterministic, and doing what they say."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from training.data import augment as A

SR = A.SAMPLE_RATE
N = SR  # one second


def _signal(seed: int = 0) -> np.ndarray:
    t = np.arange(N) / SR
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(N)).astype(np.float32)


def _tone(hz: float, n: int = N) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(n) / SR)).astype(np.float32)


def _peak_hz(x: np.ndarray) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x))))) * SR / len(x))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


RANDOM_TRANSFORMS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "filter": A.random_filter,
    "lofi": A.random_lofi,
    "reverb": lambda x, r: A.reverb(x, r, 0.4, 0.3),
    "vinyl": lambda x, r: A.vinyl(x, r, -30.0, 20.0),
    "gain": lambda x, r: A.gain_ramp(x, *r.uniform(-6, 6, 2)),
    "length_preserving": lambda x, r: A.length_preserving(x, r, A.AugmentConfig(), 2.0),
}


@pytest.mark.parametrize("name", sorted(RANDOM_TRANSFORMS))
def test_length_preserving_transforms(name: str) -> None:
    fn = RANDOM_TRANSFORMS[name]
    for seed in range(5):
        y = fn(_signal(), np.random.default_rng(seed))
        assert y.dtype == np.float32 and y.shape == (N,) and np.all(np.isfinite(y))
        np.testing.assert_array_equal(y, fn(_signal(), np.random.default_rng(seed)))


def test_transform_cut_is_deterministic_and_finite() -> None:
    cfg = A.AugmentConfig(chop_prob=1.0, speed_prob=1.0, tempo_prob=1.0)
    a = A.transform_cut(_signal(), np.random.default_rng(3), cfg)
    b = A.transform_cut(_signal(), np.random.default_rng(3), cfg)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and np.all(np.isfinite(a)) and len(a) > SR // 4


@pytest.mark.parametrize("factor", [0.88, 1.12])
def test_speed_changes_pitch_and_length(factor: float) -> None:
    y = A.change_speed(_tone(1000.0), factor)
    assert abs(len(y) - N / factor) <= 2
    assert _peak_hz(y) == pytest.approx(1000.0 * factor, rel=0.01)


@pytest.mark.parametrize("rate", [0.9, 1.1])
def test_time_stretch_keeps_pitch(rate: float) -> None:
    y = A.time_stretch(_tone(1000.0, 2 * N), rate)
    assert abs(len(y) - 2 * N / rate) <= A.OLA_FRAME
    assert _peak_hz(y[A.OLA_FRAME : -A.OLA_FRAME]) == pytest.approx(1000.0, rel=0.01)


def test_pitch_shift_keeps_length() -> None:
    y = A.shift_pitch(_tone(1000.0, 2 * N), 2.0)
    assert abs(len(y) - 2 * N) <= A.OLA_FRAME
    assert _peak_hz(y[A.OLA_FRAME : -A.OLA_FRAME]) == pytest.approx(1000.0 * 2 ** (2 / 12), rel=0.01)


def test_filters_attenuate() -> None:
    low, high = _tone(200.0), _tone(5000.0)
    assert _rms(A.filter_audio(high, "lowpass", high=800, order=4)) < 0.05 * _rms(high)
    assert _rms(A.filter_audio(low, "highpass", low=1500, order=4)) < 0.05 * _rms(low)
    band = A.filter_audio(low + high, "bandpass", low=800, high=2000, order=2)
    assert _rms(band) < 0.2 * _rms(low + high)


def test_gain_ramp_and_bitcrush() -> None:
    y = A.gain_ramp(np.ones(100, dtype=np.float32), -20.0, 0.0)
    assert y[0] == pytest.approx(0.1, rel=1e-4) and y[-1] == pytest.approx(1.0, rel=1e-4)
    crushed = A.bitcrush(_tone(440.0), 3)
    assert len(np.unique(crushed)) <= 2**3 + 1


def test_chop_and_loops() -> None:
    x = _signal()
    y = A.chop(x, np.random.default_rng(0), 4, gap_prob=0.0)
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    looped = A.loop_to(np.arange(5, dtype=np.float32), 12, offset=3)
    np.testing.assert_array_equal(looped, [3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(A.fix_length(np.ones(3, dtype=np.float32), 5), [1, 1, 1, 0, 0])


@pytest.mark.parametrize("snr_db", [-6.0, 0.0, 12.0])
def test_mix_at_snr(snr_db: float) -> None:
    sample, bed = _tone(440.0), _tone(3000.0) * 0.1
    mixed = A.mix_at_snr(sample, bed, snr_db)
    scaled_bed = mixed - sample
    assert 10 * np.log10(np.mean(sample**2) / np.mean(scaled_bed**2)) == pytest.approx(snr_db, abs=1e-3)


def test_noise_and_peak_limit() -> None:
    n = A.noise(np.random.default_rng(0), 20 * SR)  # longer than the table: looped
    assert n.shape == (20 * SR,) and abs(_rms(n) - 1.0) < 0.05
    y = A.peak_limit(np.array([0.5, -3.0], dtype=np.float32))
    assert np.max(np.abs(y)) == pytest.approx(0.99)
    np.testing.assert_array_equal(A.peak_limit(np.array([0.5], dtype=np.float32)), [0.5])
