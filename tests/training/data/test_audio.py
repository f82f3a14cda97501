"""Training's decoding (the contract's rules, the path in every error, a warning for repaired samples) and
FLAC writing."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serving.contract import AudioError
from training.data.audio import read_audio as load_audio
from training.data.audio import write_audio


def _tone(sr: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return 0.5 * np.sin(2 * np.pi * hz * t)


def _peak_hz(x: np.ndarray, sr: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


def test_stereo_24bit_44k_is_mixed_and_resampled(tmp_path: Path) -> None:
    tone = _tone(44100, 1.0)
    stereo = np.stack([tone, np.zeros_like(tone)], axis=1)  # right channel silent
    path = tmp_path / "x.wav"
    sf.write(path, stereo, 44100, subtype="PCM_24")
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 16000) <= 1
    assert np.max(np.abs(x[1000:-1000])) == pytest.approx(0.25, abs=0.01)  # average of the two channels
    assert _peak_hz(x) == pytest.approx(440.0, abs=2.0)


def test_same_rate_is_untouched(tmp_path: Path) -> None:
    tone = _tone(16000, 0.5).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, tone, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), tone)


def test_other_target_rate(tmp_path: Path) -> None:
    path = tmp_path / "x.flac"
    sf.write(path, _tone(48000, 0.5), 48000)
    assert abs(len(load_audio(path, 8000)) - 4000) <= 1


def test_nonfinite_samples_become_zero_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wave = np.full(1600, 0.25, dtype=np.float32)
    wave[[10, 20, 30]] = [np.nan, np.inf, -np.inf]
    wave[40] = 3.0  # out of range: clipped
    path = tmp_path / "x.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="serving.audio"):
        x = load_audio(path)
    assert np.all(np.isfinite(x)) and x[[10, 20, 30]].tolist() == [0.0, 0.0, 0.0] and x[40] == 1.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "replaced 3 non-finite samples" in warnings[0].getMessage() and "x.wav" in warnings[0].getMessage()


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as info:
        load_audio(tmp_path / "missing.wav")
    assert "missing.wav" in str(info.value) and "\n" not in str(info.value)
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioError, match="bad.flac: not a readable audio file"):
        load_audio(bad)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0), 16000)
    with pytest.raises(AudioError, match="empty.wav: no audio samples"):
        load_audio(path)


def test_write_audio_roundtrip(tmp_path: Path) -> None:
    tone = _tone(16000, 0.25).astype(np.float32)
    path = tmp_path / "sub" / "y.flac"
    write_audio(path, np.concatenate([tone, [2.0, -2.0]]))  # out-of-range values are clipped
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", 16000, 1)
    y = load_audio(path)
    np.testing.assert_allclose(y[: len(tone)], tone, atol=1e-4)
    assert y.max() <= 1.0 and y.min() >= -1.0
