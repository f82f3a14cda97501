"""Decode audio for training: any soundfile format -> float32 mono at the model's sample rate.

Channels are averaged and the result is resampled with soxr (quality ``HQ``). torchaudio's loader is not
used because it needs FFmpeg.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
RESAMPLE_QUALITY = "HQ"
WRITE_SUBTYPE = "PCM_16"


class AudioError(RuntimeError):
    """An audio file could not be decoded; the message is one line naming the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _frame_range(path: Path, sr: int, frames: int, start_s: float | None,
                 end_s: float | None) -> tuple[int, int]:
    """Convert an optional [start_s, end_s) span to file frame indices, clipped to the file."""
    start = 0 if start_s is None else min(frames, max(0, int(round(start_s * sr))))
    stop = frames if end_s is None else min(frames, max(0, int(round(end_s * sr))))
    if stop <= start:
        raise AudioError(path, f"empty span start_s={start_s} end_s={end_s} (file has {frames / sr:.3f} s)")
    return start, stop


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, *, start_s: float | None = None,
               end_s: float | None = None) -> np.ndarray:
    """Decode an audio file to float32 mono at ``sample_rate``.

    Args:
        path: any format libsndfile reads (WAV, FLAC, OGG, ...).
        sample_rate: target rate in Hz.
        start_s: optional start of the span to read, seconds.
        end_s: optional end of the span to read, seconds.

    Returns:
        ``[S]`` float32 samples, channels averaged.

    Raises:
        AudioError: missing/unreadable file, empty audio, or non-finite samples.
    """
    path = Path(path)
    try:
        with sf.SoundFile(path) as f:
            sr, frames = f.samplerate, f.frames
            start, stop = _frame_range(path, sr, frames, start_s, end_s)
            f.seek(start)
            data = f.read(stop - start, dtype="float32", always_2d=True)  # [S, C]
    except AudioError:
        raise
    except (OSError, RuntimeError, sf.LibsndfileError, ValueError) as exc:
        raise AudioError(path, f"cannot decode: {' '.join(str(exc).split())}") from exc
    if data.shape[0] == 0:
        raise AudioError(path, "no audio samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # [S]
    if not np.all(np.isfinite(mono)):
        raise AudioError(path, "non-finite samples")
    if sr != sample_rate:
        mono = soxr.resample(mono, sr, sample_rate, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(mono, dtype=np.float32)


def write_audio(path: str | Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono audio as 16-bit FLAC (clipped to [-1, 1]); creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(np.asarray(wave, dtype=np.float64), -1.0, 1.0), sample_rate,
             subtype=WRITE_SUBTYPE, format="FLAC")
