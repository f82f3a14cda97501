"""The windows verification feeds to the eager model and to the artifact.

- **Parity pool**: up to ``max_windows`` windows of real audio (``--audio`` files, else the manifest's test
  songs, else ``data/demo``'s), plus the edge signals (noise, silence, clipping, chirp) always. Without any real
  audio the pool is deterministic test signals (``signals``), and one WARNING line says so.
- **Held-out songs** (reduced precisions only): the labelled ``test`` split of ``--manifest`` (else data/demo),
  which gives both bars, window top-1 agreement and the song-level accuracy drop. Without labelled songs,
  agreement is measured on the ``--audio`` files or the test signals, and a WARNING says plainly that the
  accuracy bar was **not** checked (we warn rather than refuse, so a user with no labelled data can still
  export fp16/int8; the report's ``heldout_source`` records it).
- **Calibration windows** (``--precision int8``; :func:`calibration_windows`): the same sources, in the same
  order, except that a manifest gives its ``train`` split (the songs verification judges on are not the ones
  the quantiser saw; the ``test`` split only when there is no ``train`` one). The caller warns when it gets
  test signals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ast_export.errors import VerifyInputError
from ast_export.heldout import DEMO_MANIFEST, HELD_OUT_SPLIT, Song, labelled_songs, load_songs, window_songs
from ast_export.options import VerifyOptions
from ast_export.signals import edge_windows, signal_songs

logger = logging.getLogger(__name__)

AUDIO_KIND = "audio"
SIGNAL_KIND = "test signal"
SIGNAL_SOURCE = "test signals (no real audio)"
CALIBRATION_SPLIT = "train"


@dataclass
class VerifyInputs:
    """The parity pool (windows + a kind per window) and the held-out songs."""

    windows: np.ndarray  # [N, S]
    kinds: list[str]
    audio_source: str
    heldout: list[Song] = field(default_factory=list)
    heldout_source: str = "none"


@dataclass(frozen=True)
class Geometry:
    """What the model expects of its input: rate, window and hop in samples."""

    sample_rate: int
    window: int
    hop: int


def parity_pool(songs: list[Song], max_windows: int) -> np.ndarray:
    """Up to ``max_windows`` windows spread evenly over the songs: [N, S]."""
    per_song = max(1, -(-max_windows // len(songs)))
    picked = [s.windows[np.linspace(0, len(s.windows) - 1, min(per_song, len(s.windows))).astype(int)]
              for s in songs]
    return np.concatenate(picked)[:max_windows]  # [N, S]


def _signal_songs(geo: Geometry) -> list[Song]:
    return window_songs(signal_songs(geo.sample_rate), geo.window, geo.hop)


def resolve_manifest(manifest: Path | None) -> Path | None:
    """``--manifest``, else data/demo's when present, else None."""
    if manifest is not None:
        return manifest
    return DEMO_MANIFEST if DEMO_MANIFEST.exists() else None


def _manifest_songs(geo: Geometry, labels: list[str], manifest: Path | None, split: str
                    ) -> tuple[list[Song], str]:
    """The decoded ``split`` songs of ``manifest`` (none without one) and their description."""
    if manifest is None:
        return [], "none"
    songs = load_songs(labelled_songs(manifest, labels, split), geo.sample_rate, geo.window, geo.hop)
    return songs, f"{manifest} ({split} split)"


def _pool_songs(geo: Geometry, audio: tuple[Path, ...], labelled: list[Song], labelled_source: str
                ) -> tuple[list[Song], str, str]:
    """The songs a pool is cut from: ``audio`` files, else ``labelled``, else the test signals; their
    description and the pool's kind."""
    if audio:
        songs = load_songs([(Path(p), None) for p in audio], geo.sample_rate, geo.window, geo.hop)
        if not songs:
            raise VerifyInputError("none of the --audio files could be decoded (see the warnings above)")
        return songs, "audio files", AUDIO_KIND
    if labelled:
        return labelled, labelled_source, AUDIO_KIND
    return _signal_songs(geo), SIGNAL_SOURCE, SIGNAL_KIND


def _heldout(geo: Geometry, pool: list[Song], pool_source: str, labelled: list[Song], manifest: Path | None
             ) -> tuple[list[Song], str]:
    """Labelled test songs when there are any; else unlabelled ones, with the accuracy bar left unchecked."""
    if labelled:
        return labelled, f"{manifest} ({HELD_OUT_SPLIT} split)"
    songs, source = (pool, pool_source) if pool_source != SIGNAL_SOURCE else (_signal_songs(geo), SIGNAL_SOURCE)
    logger.warning("no labelled held-out songs (give --manifest with a '%s' split): the song-level "
                   "accuracy bar was NOT checked; top-1 agreement is measured on %s only", HELD_OUT_SPLIT, source)
    return songs, f"{source}, unlabelled: accuracy bar not checked"


def build_inputs(geo: Geometry, labels: list[str], options: VerifyOptions, want_heldout: bool = False
                 ) -> VerifyInputs:
    """The parity pool (``options.max_windows`` windows + the edge signals) and, if ``want_heldout``, the
    held-out songs (see the module docstring for where each comes from)."""
    manifest = resolve_manifest(options.manifest)
    labelled, labelled_source = _manifest_songs(geo, labels, manifest, HELD_OUT_SPLIT)
    songs, source, kind = _pool_songs(geo, options.audio, labelled, labelled_source)
    if kind == SIGNAL_KIND:
        logger.warning("no real audio (no --audio, no --manifest, no %s): the parity pool is deterministic "
                       "test signals (noise, silence, clipped chords, chirps)", DEMO_MANIFEST)
    edges, edge_kinds = edge_windows(geo.window, geo.sample_rate)  # [4, S]
    pool = parity_pool(songs, options.max_windows)  # [N, S]
    result = VerifyInputs(np.concatenate([pool, edges]), [kind] * len(pool) + edge_kinds, source)
    if want_heldout:
        result.heldout, result.heldout_source = _heldout(geo, songs, source, labelled, manifest)
    return result


def calibration_windows(geo: Geometry, labels: list[str], audio: tuple[Path, ...], manifest: Path | None,
                        max_windows: int) -> tuple[np.ndarray, str, str]:
    """Up to ``max_windows`` windows to calibrate int8 on: [N, S], their description and kind (module
    docstring: ``audio`` files, else the manifest's train split, else its test split, else test signals)."""
    manifest = resolve_manifest(manifest)
    labelled, labelled_source = [], "none"
    if not audio:
        labelled, labelled_source = _manifest_songs(geo, labels, manifest, CALIBRATION_SPLIT)
        if not labelled:
            labelled, labelled_source = _manifest_songs(geo, labels, manifest, HELD_OUT_SPLIT)
    songs, source, kind = _pool_songs(geo, audio, labelled, labelled_source)
    return parity_pool(songs, max_windows), source, kind  # [N, S]
