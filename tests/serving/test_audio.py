"""Decoding: formats, bit depths, rates, channels, non-finite values, bad files, block streaming."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serving.audio import AudioError, DecodeStats, load_audio, stream_audio
from tests.serving.conftest import write_tone

SECONDS = 1.5


@pytest.mark.parametrize(
    ("name", "fmt", "subtype", "rate", "channels"),
    [
        ("pcm16.flac", "FLAC", "PCM_16", 16000, 1),
        ("pcm24.flac", "FLAC", "PCM_24", 44100, 2),
        ("pcm16.wav", "WAV", "PCM_16", 48000, 1),
        ("u8.wav", "WAV", "PCM_U8", 16000, 1),
        ("pcm24.wav", "WAV", "PCM_24", 22050, 1),
        ("float.wav", "WAV", "FLOAT", 16000, 1),
        ("rate8k.wav", "WAV", "PCM_16", 8000, 1),
        ("rate96k.wav", "WAV", "PCM_16", 96000, 1),
        ("six.wav", "WAV", "PCM_16", 48000, 6),
        ("vorbis.ogg", "OGG", "VORBIS", 44100, 2),
    ],
)
def test_decode_any_format_to_mono_16k(tmp_path: Path, name: str, fmt: str, subtype: str, rate: int,
                                       channels: int) -> None:
    path = write_tone(tmp_path / name, SECONDS, rate=rate, channels=channels, subtype=subtype, fmt=fmt)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.shape[0] - SECONDS * 16000) <= 2
    assert np.isfinite(wave).all() and np.abs(wave).max() <= 1.0
    assert 0.2 < np.abs(wave).max() < 0.7  # the 0.5-amplitude tone survives down-mix and resampling


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile built without MP3")
def test_mp3_when_supported(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "x.mp3", SECONDS, rate=44100, fmt="MP3", subtype="MPEG_LAYER_III")
    wave = load_audio(path)
    assert abs(wave.shape[0] - SECONDS * 16000) < 16000 * 0.1  # MP3 adds encoder padding


def test_block_streaming_matches_one_shot(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "x.wav", 3.0, rate=44100)
    small = np.concatenate(list(stream_audio(path, block_frames=1000)))
    large = np.concatenate(list(stream_audio(path, block_frames=1 << 20)))
    assert small.shape == large.shape
    assert np.abs(small - large).max() < 1e-4


def test_exact_multiple_of_block(tmp_path: Path) -> None:
    sf.write(tmp_path / "x.wav", np.zeros(4096, np.float32), 16000)
    assert load_audio(tmp_path / "x.wav").shape == (4096,)
    assert sum(b.shape[0] for b in stream_audio(tmp_path / "x.wav", block_frames=1024)) == 4096


def test_nonfinite_replaced_and_counted(tmp_path: Path) -> None:
    data = np.full(16000, 0.25, np.float32)
    data[[10, 20, 30]] = [np.nan, np.inf, -np.inf]
    sf.write(tmp_path / "nan.wav", data, 16000, subtype="FLOAT")
    stats = DecodeStats()
    wave = np.concatenate(list(stream_audio(tmp_path / "nan.wav", stats=stats)))
    assert stats.nonfinite == 3 and np.isfinite(wave).all()
    assert wave[10] == 0.0 and wave[100] == pytest.approx(0.25)


def test_out_of_range_float_clipped(tmp_path: Path) -> None:
    sf.write(tmp_path / "hot.wav", np.full(1000, 3.0, np.float32), 16000, subtype="FLOAT")
    stats = DecodeStats()
    wave = np.concatenate(list(stream_audio(tmp_path / "hot.wav", stats=stats)))
    assert wave.max() == 1.0 and stats.clipped == 1000


def _put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated_flac(tmp_path: Path) -> Path:
    full = write_tone(tmp_path / "full.flac", 5.0)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    return cut


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "missing.flac", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _put(d / "empty.flac", b""), "empty file"),
        (lambda d: _put(d / "r.flac", os.urandom(4096)), "not a readable audio file"),
        (lambda d: _put(d / "t.txt", b"hello\n"), "not a readable audio file"),
    ],
)
def test_bad_files_raise_one_line(tmp_path: Path, make, reason: str) -> None:
    with pytest.raises(AudioError) as info:
        load_audio(make(tmp_path))
    assert reason in str(info.value) and "\n" not in str(info.value)


def test_truncated_flac_is_error_or_shorter(tmp_path: Path) -> None:
    """libsndfile either stops early (we keep what decoded) or reports an error: never a crash."""
    try:
        wave = load_audio(_truncated_flac(tmp_path))
    except AudioError as err:
        assert "\n" not in str(err)
    else:
        assert wave.shape[0] < 5.0 * 16000 and np.isfinite(wave).all()


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(AudioError, match="not a regular file"):
        load_audio(fifo)


def test_broken_symlink(tmp_path: Path) -> None:
    (tmp_path / "link.flac").symlink_to(tmp_path / "gone.flac")
    with pytest.raises(AudioError, match="broken symbolic link"):
        load_audio(tmp_path / "link.flac")
