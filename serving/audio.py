"""Decode any audio file libsndfile reads into mono float32 at the model's rate, in bounded memory.

One job: bytes on disk -> a stream of mono float32 blocks in [-1, 1] at ``sample_rate``.

- Formats: whatever the installed libsndfile reads (FLAC, WAV/RF64, OGG/Vorbis/Opus, AIFF, and MP3 with
  libsndfile >= 1.1). Any sample rate, channel count and bit depth.
- Memory: the file is read in blocks of ``BLOCK_FRAMES`` source frames, down-mixed to mono, then fed to a
  streaming ``soxr.ResampleStream``; nothing ever holds the whole file, so a 2-hour song costs the same
  resident memory as a 2-minute one.
- Non-finite samples (NaN / +-Inf, possible only in float files) are **replaced by 0** and counted; the caller
  gets the count in :class:`DecodeStats` and logs one warning per file. We chose repair over refusal because a
  few bad samples in a long float WAV should not cost the whole song its answer.
- Out-of-range float samples are clipped to [-1, 1], as the exported graph expects.

Every failure (missing file, directory, permissions, not audio, truncated stream) raises :class:`AudioError`
with a one-line message meant to be printed as ``path: message``.
"""

from __future__ import annotations

import io
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

logger = logging.getLogger(__name__)

TARGET_RATE = 16000
BLOCK_FRAMES = 1 << 16  # source frames per read: ~1.4 s at 48 kHz, a few MB even for 8 channels
MAX_BLOCK_VALUES = 1 << 22  # samples (all channels) per read: 16 MB of float32, whatever the header claims
RESAMPLE_QUALITY = "HQ"
EMPTY = np.zeros(0, dtype=np.float32)
INTEGER_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "ULAW", "ALAW"})


class AudioError(Exception):
    """A per-file decoding problem; ``str(err)`` is a one-line, user-facing reason."""


@dataclass
class DecodeStats:
    """Counters filled in while a file streams; final once the stream is exhausted."""

    source_rate: int = 0
    channels: int = 0
    samples_out: int = 0  # mono samples produced at the target rate
    nonfinite: int = 0  # NaN/Inf samples replaced by 0
    clipped: int = 0  # samples clipped into [-1, 1]


def check_readable(path: str | os.PathLike) -> None:
    """Raise :class:`AudioError` with a precise reason when ``path`` cannot be an audio file.

    Args:
        path: file path (str or bytes-like path; non-UTF-8 names are fine).
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as err:
        raise AudioError("broken symbolic link" if os.path.islink(path) else "no such file") from err
    except PermissionError as err:
        raise AudioError("permission denied") from err
    except (OSError, ValueError) as err:  # ValueError: embedded NUL byte
        raise AudioError(_os_reason(err) if isinstance(err, OSError) else "invalid path") from err
    if stat.S_ISDIR(mode):
        raise AudioError("is a directory")
    if not stat.S_ISREG(mode):
        raise AudioError("not a regular file (FIFO, socket or device)")  # opening a FIFO would block
    try:
        with open(path, "rb") as fh:
            head = fh.read(1)
    except PermissionError as err:
        raise AudioError("permission denied") from err
    except OSError as err:
        raise AudioError(_os_reason(err)) from err
    if not head:
        raise AudioError("empty file")


def _os_reason(err: OSError) -> str:
    return os.strerror(err.errno).lower() if err.errno else str(err).splitlines()[0]


def _first_line(err: BaseException) -> str:
    from serving.contract import one_line  # the one one-line rule; lazy: the contract re-exports this module

    return one_line(err)


def open_audio(path: str | os.PathLike) -> sf.SoundFile:
    """Open ``path`` with libsndfile, turning every failure into :class:`AudioError`."""
    check_readable(path)
    return _open_sound(os.fsencode(path))  # bytes: soundfile cannot encode non-UTF-8 str names


def _open_sound(source: bytes | io.BytesIO) -> sf.SoundFile:
    """libsndfile's open of a path or an in-memory file, every failure an :class:`AudioError`."""
    try:
        snd = sf.SoundFile(source)
    except sf.LibsndfileError as err:
        raise AudioError(f"not a readable audio file ({_libsndfile_reason(err)})") from err
    except (OSError, RuntimeError, ValueError, TypeError) as err:
        raise AudioError(f"not a readable audio file ({_first_line(err)})") from err
    if snd.samplerate <= 0 or snd.channels <= 0:
        snd.close()
        raise AudioError(f"invalid header (rate {snd.samplerate}, {snd.channels} channels)")
    return snd


def _libsndfile_reason(err: sf.LibsndfileError) -> str:
    text = getattr(err, "error_string", "") or _first_line(err)
    return text.rstrip(".").lower() if text else "libsndfile error"


def stream_audio(
    path: str | os.PathLike,
    sample_rate: int = TARGET_RATE,
    block_frames: int = BLOCK_FRAMES,
    stats: DecodeStats | None = None,
) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks of ``path`` at ``sample_rate``, clipped to [-1, 1].

    Args:
        path: audio file.
        sample_rate: output rate (the model's, from its metadata).
        block_frames: source frames decoded per step; bounds memory.
        stats: optional counters, updated as blocks are produced.

    Yields:
        1-D float32 arrays (some may be empty while the resampler fills up).

    Raises:
        AudioError: the file cannot be opened or decoding fails part way (e.g. a truncated FLAC).
    """
    with open_audio(path) as snd:
        yield from stream_sound(snd, sample_rate, block_frames, stats)


def open_audio_buffer(data: bytes) -> sf.SoundFile:
    """Open audio held in memory (e.g. an HTTP upload) with libsndfile; nothing touches the disk.

    Raises:
        AudioError: the same one-line reasons as :func:`open_audio` gives for a file.
    """
    if not data:
        raise AudioError("empty file")
    return _open_sound(io.BytesIO(data))


def stream_sound(
    snd: sf.SoundFile,
    sample_rate: int = TARGET_RATE,
    block_frames: int = BLOCK_FRAMES,
    stats: DecodeStats | None = None,
) -> Iterator[np.ndarray]:
    """:func:`stream_audio` over an already open file (from :func:`open_audio` or :func:`open_audio_buffer`)."""
    stats = stats if stats is not None else DecodeStats()
    stats.source_rate, stats.channels = snd.samplerate, snd.channels
    resampler = None
    check_finite = snd.subtype not in INTEGER_SUBTYPES  # only float/lossy data can hold NaN/Inf
    if snd.samplerate != sample_rate:
        resampler = soxr.ResampleStream(snd.samplerate, sample_rate, 1, dtype="float32",
                                        quality=RESAMPLE_QUALITY)
    block_frames = max(1, min(block_frames, MAX_BLOCK_VALUES // snd.channels))
    while True:
        block = _read_block(snd, block_frames)  # [n, channels]
        last = block.shape[0] < block_frames
        mono = _to_mono(block, stats, check_finite)  # [n]
        if resampler is not None:
            mono = resampler.resample_chunk(mono, last=last)
        mono = _clip(mono, stats)
        stats.samples_out += mono.shape[0]
        yield mono
        if last:
            return


def _read_block(snd: sf.SoundFile, frames: int) -> np.ndarray:
    try:
        return snd.read(frames, dtype="float32", always_2d=True)  # [n, channels]
    except sf.LibsndfileError as err:
        raise AudioError(f"decoding failed ({_libsndfile_reason(err)})") from err
    except (OSError, RuntimeError, ValueError) as err:
        raise AudioError(f"decoding failed ({_first_line(err)})") from err


def _to_mono(block: np.ndarray, stats: DecodeStats, check_finite: bool) -> np.ndarray:
    """Average channels; zero non-finite samples first so one bad channel does not poison the mix."""
    if check_finite:
        finite = np.isfinite(block)
        if not finite.all():
            stats.nonfinite += int(block.size - np.count_nonzero(finite))
            block = np.where(finite, block, np.float32(0.0))
    channels = block.shape[1]
    if channels == 1:
        return np.ascontiguousarray(block[:, 0])
    return block @ np.full(channels, 1.0 / channels, dtype=np.float32)  # [n]; BLAS beats mean(axis=1)


def _clip(mono: np.ndarray, stats: DecodeStats) -> np.ndarray:
    if mono.size == 0:
        return mono.astype(np.float32, copy=False)
    peak = float(np.max(np.abs(mono)))
    if peak > 1.0:
        stats.clipped += int(np.count_nonzero(np.abs(mono) > 1.0))
        mono = np.clip(mono, -1.0, 1.0)
    return mono.astype(np.float32, copy=False)


def load_audio(path: str | os.PathLike, sample_rate: int = TARGET_RATE, stats: DecodeStats | None = None
               ) -> np.ndarray:
    """Decode a whole file into one mono float32 array (for files that fit in memory).

    Args:
        path: audio file.
        sample_rate: output rate.
        stats: optional counters (repaired and clipped samples), filled while decoding.

    Returns:
        float32 array [S].
    """
    blocks = list(stream_audio(path, sample_rate, stats=stats))
    return np.concatenate(blocks) if blocks else EMPTY.copy()


def warn_repairs(name: str, stats: DecodeStats) -> None:
    """The one warning a file with repaired samples gets, wherever it was decoded."""
    if stats.nonfinite:
        logger.warning("%s: replaced %d non-finite samples (NaN/Inf) with 0", name, stats.nonfinite)
