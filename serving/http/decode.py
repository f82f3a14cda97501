"""An upload in memory -> one mono float32 song at the model's rate (the CLI's decoder, never a disk path).

Runs in a worker thread. The length is checked twice: from the header before any decoding (so a long file
costs nothing), and while decoding, for formats whose header does not say or lies.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from serving.audio import AudioError, DecodeStats, open_audio_buffer, stream_sound
from serving.contract import one_line
from serving.http.limits import HttpError

logger = logging.getLogger(__name__)

UNKNOWN_FRAMES = 1 << 62  # libsndfile reports SF_COUNT_MAX frames when the header does not know the length
UNREADABLE = ("not a readable audio file", "invalid header")
SLACK_S = 0.1  # resampling may add a few samples past what the header promised


class Cancelled(Exception):
    """The request went away while its upload was decoding."""


@dataclass
class DecodedSong:
    """One decoded upload: ``wave`` [samples] float32 at the model's rate."""

    wave: np.ndarray
    stats: DecodeStats

    @property
    def samples(self) -> int:
        """Decoded length at the model's rate."""
        return int(self.wave.shape[0])


def too_long(seconds: float | None, max_audio_s: float) -> HttpError:
    """The 413 for a song over ``--max-audio-s`` (``seconds`` from the header, None when found decoding)."""
    said = f"{seconds:.1f} s long" if seconds is not None else "longer than that"
    return HttpError(413, f"audio is {said}; this server accepts songs up to {max_audio_s:g} s (--max-audio-s)")


def decode_error(err: AudioError) -> HttpError:
    """The CLI's one-line message; 415 when libsndfile does not know the format, 422 when decoding fails."""
    text = str(err)
    return HttpError(415 if text.startswith(UNREADABLE) else 422, text)


def decode_upload(data: bytes, sample_rate: int, max_audio_s: float,
                  cancel: threading.Event | None = None) -> DecodedSong:
    """Decode ``data`` with :func:`serving.audio.stream_sound`, the NaN/clip rules of the CLI included.

    Raises:
        HttpError: 413 too long; 415/422 not decodable (the CLI's message).
        Cancelled: ``cancel`` was set between two blocks.
    """
    stats = DecodeStats()
    try:
        with open_audio_buffer(data) as snd:
            if 0 < snd.frames < UNKNOWN_FRAMES and snd.frames / snd.samplerate > max_audio_s:
                raise too_long(snd.frames / snd.samplerate, max_audio_s)
            wave = _read_all(snd, sample_rate, max_audio_s, stats, cancel)
    except AudioError as err:
        raise decode_error(err) from None
    except (OSError, RuntimeError, ValueError, MemoryError) as err:  # as iter_batches: one upload, one line
        raise HttpError(422, f"unexpected decoding error: {one_line(err)}") from None
    if wave.shape[0] == 0:
        raise HttpError(422, "contains no audio samples")
    return DecodedSong(wave, stats)


def _read_all(snd, sample_rate: int, max_audio_s: float, stats: DecodeStats,
              cancel: threading.Event | None) -> np.ndarray:
    max_samples = int((max_audio_s + SLACK_S) * sample_rate)
    blocks, total = [], 0
    for block in stream_sound(snd, sample_rate, stats=stats):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        total += block.shape[0]
        if total > max_samples:
            raise too_long(None, max_audio_s)
        blocks.append(block)
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
