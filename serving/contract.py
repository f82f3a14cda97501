"""The runtime contract: the rules that training, export and serving must apply identically (numpy only).

Every package imports these from here and nowhere else, so that training's validation scores a song exactly
as ``ast-serve`` will, and an exported graph says what serving expects. ``import serving.contract`` costs numpy,
plus soundfile and soxr for decoding (never torch).

What lives here, in data order:

- **Decoding**: any libsndfile file -> mono float32 in [-1, 1] at the model's rate. One rule for bad samples:
  NaN/+-Inf become 0 (counted in :class:`DecodeStats`; :func:`warn_repairs` is the one warning per file),
  out-of-range samples are clipped. The implementation is
  :mod:`serving.audio`; it is re-exported here so that callers depend on the contract only.
- **Exported-graph IO**: the input and output names and the metadata key, version and required fields.
- **Window placement** (:func:`window_starts`) and the **default hop** (:func:`default_hop`, half a window).
- **Song aggregation** (:func:`song_scores`: max over a song's windows).
- **Rounding** of times and scores at output (:func:`round_time`, :func:`round_score`).
- Small shared helpers: one-line error text, atomic file writes, a stderr log handler.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from serving.audio import AudioError, DecodeStats, load_audio, stream_audio, warn_repairs
from serving.filekind import FileKind, describe_file, detect_kind, kind_mismatch  # noqa: F401 - re-exported
from serving.progress import show_progress  # noqa: F401 - re-exported

__all__ = [
    "INDEX_SCALES", "MANIFEST_OPTIONAL", "MANIFEST_REQUIRED", "SCORE_DECIMALS", "TIME_DECIMALS", "warn_repairs",
    "AudioError", "DecodeStats", "FORMAT_VERSION", "INPUT_NAME", "METADATA_KEY", "ModelError", "ModelMetadata",
    "OUTPUT_NAMES", "atomic_write", "default_hop", "load_audio", "log_to_stderr", "one_line", "parse_metadata",
    "SPLITS", "read_manifest_rows", "remove_stale_temps", "song_path", "split_name", "round_score", "round_time", "song_scores", "song_windows", "stream_audio",
    "window_starts",
]

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------- exported graph
INPUT_NAME = "waveform"  # float32 [batch, window_samples], mono, in [-1, 1]
OUTPUT_NAMES = ("probs", "embedding")  # [batch, classes] softmax; [batch, dim] L2-normalised
METADATA_KEY = "ast_sampleid"  # one JSON value under this key in every artifact
FORMAT_VERSION = 1  # the metadata document this code writes
KNOWN_FORMAT_VERSIONS = (1,)  # the ones it reads
REQUIRED_INTS = ("sample_rate", "window_samples", "hop_samples")

# ----------------------------------------------------------------------------------------- output rounding
TIME_DECIMALS = 3  # seconds: 1 ms
MAX_MESSAGE_CHARS = 300  # one-line error messages are cut here
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # colour codes some libraries put into messages
SCORE_DECIMALS = 4


class ModelError(Exception):
    """A model file or its metadata cannot be used; ``str(err)`` is one actionable line."""


@dataclass(frozen=True)
class ModelMetadata:
    """The validated ``ast_sampleid`` metadata of an exported graph (``raw`` keeps every field)."""

    format_version: int
    labels: tuple[str, ...]
    sample_rate: int
    window_samples: int
    hop_samples: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def window_s(self) -> float:
        return self.window_samples / self.sample_rate

    @property
    def hop_s(self) -> float:
        return self.hop_samples / self.sample_rate


def parse_metadata(text: str | bytes | None) -> ModelMetadata:
    """Validate the metadata JSON text; raise :class:`ModelError` naming the first problem."""
    if text is None:
        raise ModelError(f"no '{METADATA_KEY}' metadata: not an ast-sampleid export (re-export with ast-export)")
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"'{METADATA_KEY}' metadata is not valid JSON ({one_line(err)})") from err
    if not isinstance(raw, dict):
        raise ModelError(f"'{METADATA_KEY}' metadata must be a JSON object")
    version = raw.get("format_version")
    if version not in KNOWN_FORMAT_VERSIONS:
        raise ModelError(f"unknown metadata format_version {version!r} (this version reads "
                         f"{', '.join(map(str, KNOWN_FORMAT_VERSIONS))}); upgrade ast-sampleid or re-export")
    labels = raw.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ModelError("metadata 'labels' must be a non-empty list of strings")
    ints = {}
    for key in REQUIRED_INTS:
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ModelError(f"metadata '{key}' must be a positive integer, got {value!r}")
        ints[key] = value
    return ModelMetadata(version, tuple(labels), raw=raw, **ints)


# ----------------------------------------------------------------------------------------- manifest
SPLITS = ("train", "val", "test")
MANIFEST_REQUIRED = ("song", "sample")  # song: audio path relative to the manifest's folder; sample: the label
MANIFEST_OPTIONAL = ("split", "start_s", "end_s")


def split_name(text: str | None) -> str:
    """A manifest ``split`` value as compared everywhere: stripped, lower case (``Train`` is ``train``)."""
    return (text or "").strip().lower()


def song_path(manifest: str | os.PathLike, song: str) -> Path:
    """Absolute path of a manifest ``song`` entry (relative paths are relative to the manifest's folder)."""
    return (Path(manifest).resolve().parent / song.strip()).resolve()


def read_manifest_rows(manifest: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a manifest CSV (UTF-8, a BOM tolerated); validation is the reader's job."""
    with open(manifest, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = header  # column names are compared stripped, by every reader
        return header, list(reader)


# ----------------------------------------------------------------------------------------- time-scales
# The speeds at which the catalogue indexes every record (a record "played" x0.797 ... x1.254), so a sample
# sped up or slowed down by x0.75-1.35 lands within half a step of an indexed scale. Training anchors its
# fingerprint pairs on the same grid, so the residual speed it learns to ignore is the one retrieval meets.
SCALE_STEP = 1.12
INDEX_SCALES = tuple(round(SCALE_STEP ** k, 3) for k in range(-2, 3))  # 0.797 0.893 1.0 1.12 1.254


# ----------------------------------------------------------------------------------------- windows
def default_hop(window_samples: int) -> int:
    """The default hop between windows: half a window (what export writes into the metadata)."""
    return max(1, window_samples // 2)


def window_starts(length: int, window: int, hop: int, complete: bool = True) -> np.ndarray:
    """Window starts (samples) for a signal of ``length`` samples. **The** window-placement rule.

    - starts at ``0, hop, 2*hop, ...`` while ``start + window <= length``;
    - if the last regular window stops short of the end, one more window is aligned to the end, so the tail is
      always covered;
    - a signal shorter than one window gives one window at 0 (zero-padded at the end by the caller).

    Args:
        length: signal length in samples.
        window: samples per window (> 0).
        hop: samples between regular starts (> 0).
        complete: False while a stream is still growing: only the regular starts that already fit (the tail and
            padded windows are decided once the length is final). Each call's result is a prefix of the next.

    Returns:
        int64 ``[n]``, ascending.
    """
    if window <= 0 or hop <= 0:
        raise ValueError(f"window ({window}) and hop ({hop}) must be positive")
    regular = np.arange(0, max(0, length - window + 1), hop, dtype=np.int64)  # [n]
    if not complete:
        return regular
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    if regular[-1] + window < length:
        regular = np.append(regular, np.int64(length - window))
    return regular


def song_windows(wave: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Cut a whole song into model windows ``[N, window]`` float32 by :func:`window_starts`."""
    wave = np.asarray(wave, dtype=np.float32)  # [L]
    starts = window_starts(wave.shape[0], window, hop)  # [N]
    if wave.shape[0] < window:
        wave = np.pad(wave, (0, window - wave.shape[0]))  # [window]
    return np.stack([wave[s:s + window] for s in starts])  # [N, window]


# ----------------------------------------------------------------------------------------- song scores
def song_scores(probs: np.ndarray) -> np.ndarray:
    """A song's per-class score: the max over its windows. ``probs`` ``[N, C]`` -> ``[C]``."""
    return np.asarray(probs).max(axis=0)


def round_time(seconds: float) -> float:
    """Seconds as printed everywhere (1 ms)."""
    return round(float(seconds), TIME_DECIMALS)


def round_score(score: float) -> float:
    """Scores as printed everywhere (4 decimals)."""
    return round(float(score), SCORE_DECIMALS)


# ----------------------------------------------------------------------------------------- shared helpers
def one_line(err: BaseException, limit: int = MAX_MESSAGE_CHARS) -> str:
    """The first non-empty line of an exception's text, without terminal colour codes and at most ``limit``
    characters (its type name when it has no text): what every CLI prints after ``path:``."""
    lines = [ln.strip() for ln in ANSI_ESCAPE.sub("", str(err)).splitlines() if ln.strip()]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file atomically: ``write(handle)`` into ``.NAME.*.tmp`` beside it, fsync, rename, fsync the folder.

    A process killed mid-write leaves the previous file intact (and a temp file that
    :func:`remove_stale_temps` deletes). Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable; best effort where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files that a killed :func:`atomic_write` left beside each of ``names``.

    Call it before writing: it would also remove the temp file of a write in progress. Returns what it removed.
    """
    removed = [tmp for name in names for tmp in sorted(Path(folder).glob(f".{glob.escape(name)}.*.tmp"))
               if tmp.is_file()]
    for tmp in removed:
        tmp.unlink(missing_ok=True)
    if removed:
        logger.info("removed %d temp file(s) left by an interrupted write: %s", len(removed),
                    ", ".join(p.name for p in removed))
    return removed


class CurrentStderrHandler(logging.StreamHandler):
    """A log handler that writes to whatever ``sys.stderr`` is when a record is emitted.

    ``logging.basicConfig(stream=sys.stderr)`` binds the stream of the moment; a host that swaps ``sys.stderr``
    (click's CliRunner, a notebook) would leave it holding a closed stream.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:  # set by StreamHandler.__init__; ignored
        pass


def log_to_stderr(level: int, fmt: str) -> None:
    """Replace the root handlers with one stderr handler at ``level`` using ``fmt`` (every CLI calls this)."""
    logging.basicConfig(level=level, format=fmt, handlers=[CurrentStderrHandler()], force=True)
