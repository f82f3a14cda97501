"""Audio for training: decoding by the runtime contract's rules, and a FLAC writer for the demo data.

Decoding is ``serving.contract``'s (the rules ``ast-serve`` applies to the same files): any libsndfile format
-> mono float32 in [-1, 1] at the model's rate, NaN/Inf replaced by 0, out-of-range samples clipped. Training
adds what a training run needs on top: the path in every :class:`~serving.contract.AudioError` (a run decodes
hundreds of files), one warning per file with repaired samples, and an error for a file without samples
(a song must have audio to be trained or scored on).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf

from serving.contract import AudioError, DecodeStats, load_audio, warn_repairs

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WRITE_SUBTYPE = "PCM_16"

__all__ = ["SAMPLE_RATE", "AudioError", "read_audio", "write_audio"]


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a whole file to mono float32 at ``sample_rate`` by the contract's rules.

    Args:
        path: any format libsndfile reads (WAV, FLAC, OGG, ...).
        sample_rate: target rate in Hz.

    Returns:
        ``[S]`` float32 samples in [-1, 1].

    Raises:
        serving.contract.AudioError: ``"PATH: reason"`` (one line) for a missing, unreadable or empty file.
    """
    stats = DecodeStats()
    try:
        wave = load_audio(path, sample_rate, stats=stats)  # [S]
    except AudioError as exc:
        raise AudioError(f"{path}: {exc}") from exc
    warn_repairs(str(path), stats)
    if wave.size == 0:
        raise AudioError(f"{path}: no audio samples")
    return wave


def write_audio(path: str | Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono audio as 16-bit FLAC (clipped to [-1, 1]); creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(np.asarray(wave, dtype=np.float64), -1.0, 1.0), sample_rate,
             subtype=WRITE_SUBTYPE, format="FLAC")
