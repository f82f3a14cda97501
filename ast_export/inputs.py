"""Waveform windows that verification feeds to the eager model and to the artifact.

Three sources: real audio (``--audio`` files, else the demo catalogue's test songs), edge signals (noise,
silence, full-scale clipping), and held-out songs with their labels for the variants' accuracy bar. When no
real audio exists, music-like audio is synthesised (harmonic chords, a bass line, noise-burst drums) and the
report says so.

``ast_export`` may not import ``training`` (DESIGN.md §1), so the two small rules it shares with training are
restated here: the manifest's ``song``/``sample``/``split`` columns (paths relative to the manifest), and song
windowing (short audio zero-padded to one window, the last window aligned to the end).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

logger = logging.getLogger(__name__)

DEMO_MANIFEST = Path("data/demo/manifest.csv")
HELD_OUT_SPLIT = "test"
MAX_PARITY_WINDOWS = 16  # real/synthetic windows in the parity pool (plus the edge signals)
MAX_HELDOUT_SONGS = 120
SYNTH_SONGS = 8
SYNTH_SECONDS = 12.0
NOISE_STD = 0.3
CLIP_GAIN = 8.0  # drives a loud chord far past full scale before hard clipping
SEED = 1234


@dataclass
class Song:
    """One decoded song, its windows [N, S] and (if known) its label index."""

    name: str
    windows: np.ndarray
    label: int | None = None


@dataclass
class VerifyInputs:
    """The parity pool (windows + a kind per window) and the held-out songs."""

    windows: np.ndarray  # [N, S]
    kinds: list[str]
    audio_source: str
    heldout: list[Song] = field(default_factory=list)
    heldout_source: str = "none"


def decode_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 [S] at ``sample_rate`` (soundfile decode, soxr resample), clipped to [-1, 1]."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [S, ch]
    mono = data.mean(axis=1)  # [S]
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate).astype(np.float32)
    return np.clip(mono, -1.0, 1.0)


def song_windows(wave: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Windows [N, window] every ``hop`` samples; short audio padded, last window aligned to the end."""
    if wave.shape[0] < window:
        wave = np.pad(wave, (0, window - wave.shape[0]))
    starts = list(range(0, wave.shape[0] - window + 1, hop))
    if starts[-1] != wave.shape[0] - window:
        starts.append(wave.shape[0] - window)
    return np.stack([wave[s:s + window] for s in starts]).astype(np.float32)  # [N, S]


def synth_music(n: int, sample_rate: int, seed: int) -> np.ndarray:
    """``n`` samples of music-like audio [S]: chords with harmonics, a bass line and noise-burst drums."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sample_rate  # [S]
    beat = 60.0 / rng.uniform(80, 110)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    chord_idx = (t // (4 * beat)).astype(int) % 4
    semis = np.array([0, 5, 7, 3])[chord_idx]  # [S]
    wave = np.zeros(n)
    for interval in (0, 4, 7):
        f = root * 2 ** ((semis + interval) / 12)
        for h in (1, 2, 3):
            wave += 0.1 / h * np.sin(2 * np.pi * np.cumsum(f * h) / sample_rate)
    wave += 0.2 * np.sin(2 * np.pi * np.cumsum(root / 2 * 2 ** (semis / 12)) / sample_rate)
    phase = (t % beat) / beat
    wave += 0.3 * rng.standard_normal(n) * np.exp(-phase * 30)  # drum hits on every beat
    return (0.8 * wave / np.abs(wave).max()).astype(np.float32)


def edge_windows(window: int, sample_rate: int) -> tuple[np.ndarray, list[str]]:
    """Noise, silence and full-scale clipping windows: [3, S] and their kinds."""
    rng = np.random.default_rng(SEED)
    noise = np.clip(rng.standard_normal(window) * NOISE_STD, -1, 1)
    clipped = np.clip(synth_music(window, sample_rate, SEED) * CLIP_GAIN, -1.0, 1.0)
    return np.stack([noise, np.zeros(window), clipped]).astype(np.float32), ["noise", "silence", "clipping"]


def read_manifest_split(manifest: Path, split: str, labels: list[str]) -> list[tuple[Path, int]]:
    """(song path, label index) of ``split`` rows whose sample is one of the model's labels."""
    index = {name: i for i, name in enumerate(labels)}
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if (r.get("split") or "").strip() == split]
    kept = [(manifest.parent / r["song"], index[r["sample"]]) for r in rows if r.get("sample") in index]
    if len(kept) < len(rows):
        logger.warning("%d %s songs have samples unknown to the model; skipped", len(rows) - len(kept), split)
    return kept[:MAX_HELDOUT_SONGS]


def load_songs(paths: list[tuple[Path, int | None]], sample_rate: int, window: int, hop: int) -> list[Song]:
    """Decode and window songs; unreadable files are logged and skipped."""
    songs = []
    for path, label in paths:
        try:
            wave = decode_audio(path, sample_rate)
        except (OSError, RuntimeError, sf.LibsndfileError) as err:
            logger.warning("skipping %s: %s", path, err)
            continue
        songs.append(Song(str(path), song_windows(wave, window, hop), label))
    return songs


def synth_songs(sample_rate: int, window: int, hop: int) -> list[Song]:
    return [Song(f"synthetic-{i}", song_windows(synth_music(int(SYNTH_SECONDS * sample_rate), sample_rate, SEED + i), window, hop))
            for i in range(SYNTH_SONGS)]


def _parity_pool(songs: list[Song], max_windows: int) -> np.ndarray:
    """Up to ``max_windows`` windows spread over the songs: [N, S]."""
    per_song = max(1, -(-max_windows // len(songs)))
    picked = [s.windows[np.linspace(0, len(s.windows) - 1, min(per_song, len(s.windows))).astype(int)]
              for s in songs]
    return np.concatenate(picked)[:max_windows]


def build_inputs(sample_rate: int, window: int, hop: int, labels: list[str], audio: list[Path] | None = None,
                 manifest: Path | None = None, want_heldout: bool = False,
                 max_windows: int = MAX_PARITY_WINDOWS) -> VerifyInputs:
    """Assemble the parity pool (``max_windows`` audio windows + edge signals) and, if ``want_heldout``, the
    labelled held-out songs."""
    manifest = manifest if manifest is not None else (DEMO_MANIFEST if DEMO_MANIFEST.exists() else None)
    labelled = load_songs(read_manifest_split(manifest, HELD_OUT_SPLIT, labels), sample_rate, window, hop) \
        if manifest is not None else []
    if audio:
        songs, source = load_songs([(Path(p), None) for p in audio], sample_rate, window, hop), "audio files"
    elif labelled:
        songs, source = labelled, f"{manifest} ({HELD_OUT_SPLIT} split)"
    else:
        songs, source = synth_songs(sample_rate, window, hop), "synthetic music"
    if not songs:
        raise ValueError("none of the --audio files could be decoded")
    edges, edge_kinds = edge_windows(window, sample_rate)
    pool = _parity_pool(songs, max_windows)
    result = VerifyInputs(np.concatenate([pool, edges]), ["audio"] * len(pool) + edge_kinds, source)
    if want_heldout:
        if labelled:
            result.heldout, result.heldout_source = labelled, f"{manifest} ({HELD_OUT_SPLIT} split)"
        else:
            result.heldout, result.heldout_source = synth_songs(sample_rate, window, hop), "synthetic (no labels)"
    return result
