"""Held-out songs for verification: the labelled ``test`` split of a manifest, and decoded, windowed songs.

Manifest rows, split names and song paths are read by ``serving.contract`` (the same rules training and
serving apply); decoding is ``serving.contract.load_audio`` and windowing ``serving.contract.song_windows``.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ast_export.errors import VerifyInputError
from serving.contract import (
    AudioError,
    DecodeStats,
    load_audio,
    one_line,
    read_manifest_rows,
    song_path,
    song_windows,
    split_name,
    warn_repairs,
)

logger = logging.getLogger(__name__)

DEMO_MANIFEST = Path("data/demo/manifest.csv")
HELD_OUT_SPLIT = "test"
MAX_HELDOUT_SONGS = 120
REQUIRED_COLUMNS = ("song", "sample")


@dataclass
class Song:
    """One decoded song, its windows [N, S] and (if known) its label index."""

    name: str
    windows: np.ndarray
    label: int | None = None


def labelled_songs(manifest: Path, labels: list[str], split: str = HELD_OUT_SPLIT) -> list[tuple[Path, int]]:
    """(song path, label index) of the ``split`` rows whose sample is one of the model's labels.

    Raises:
        VerifyInputError: the manifest cannot be read or lacks the ``song``/``sample`` columns.
    """
    try:
        header, rows = read_manifest_rows(manifest)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise VerifyInputError(f"{manifest}: cannot read the manifest ({one_line(err)})") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise VerifyInputError(f"{manifest}: not a manifest (no {', '.join(missing)} column)")
    index = {name: i for i, name in enumerate(labels)}
    picked = [r for r in rows if split_name(r.get("split")) == split]
    kept = [(song_path(manifest, r["song"] or ""), index[(r["sample"] or "").strip()]) for r in picked
            if (r["sample"] or "").strip() in index]
    if len(kept) < len(picked):
        logger.warning("%d %s songs have samples unknown to the model; skipped", len(picked) - len(kept), split)
    return kept[:MAX_HELDOUT_SONGS]


def load_songs(paths: list[tuple[Path, int | None]], sample_rate: int, window: int, hop: int) -> list[Song]:
    """Decode and window songs; unreadable files are logged and skipped, repaired samples warned about once
    per file (``serving.contract.warn_repairs``, as serving and training do)."""
    songs = []
    for path, label in paths:
        stats = DecodeStats()
        try:
            wave = load_audio(path, sample_rate, stats=stats)  # [S]
        except AudioError as err:
            logger.warning("skipping %s: %s", path, err)
            continue
        warn_repairs(str(path), stats)
        songs.append(Song(str(path), song_windows(wave, window, hop), label))  # [N, window]
    return songs


def window_songs(named: list[tuple[str, np.ndarray]], window: int, hop: int) -> list[Song]:
    """Unlabelled songs from waves already in memory (the test signals)."""
    return [Song(name, song_windows(wave, window, hop)) for name, wave in named]
