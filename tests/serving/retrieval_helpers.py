"""Synthetic "records" and "songs" for the retrieval tests (numpy only), and a catalogue builder fixture helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tests.serving.fake_model import SAMPLE_RATE

RECORD_S = 10.0
NOTE_S = (0.12, 0.45)
REST_P = 0.15


def synth_record(seed: int, seconds: float = RECORD_S, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Distinct, non-repeating music: a random melody of decaying harmonic notes with rests (float32 [S])."""
    rng = np.random.default_rng(1000 + seed)
    n = int(seconds * rate)
    out = np.zeros(n + rate, dtype=np.float64)
    partials = rng.uniform(0.2, 1.0, 4)
    pos = 0
    while pos < n:
        dur = int(rng.uniform(*NOTE_S) * rate)
        if rng.random() > REST_P:
            t = np.arange(int(dur * 1.5)) / rate
            freq = 110.0 * 2 ** (rng.integers(0, 30) / 12)
            env = np.minimum(1.0, t / 0.01) * np.exp(-t / rng.uniform(0.08, 0.3))
            tone = sum(w * np.sin(2 * np.pi * freq * (k + 1) * t) for k, w in enumerate(partials))
            out[pos:pos + t.shape[0]] += rng.uniform(0.3, 1.0) * env * tone
        pos += dur
    out = out[:n]
    out += 1e-3 * rng.standard_normal(n)
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


def write(path: Path, wave: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    sf.write(str(path), wave, rate, subtype="FLOAT")
    return path


def speed(wave: np.ndarray, factor: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Play ``wave`` ``factor`` times faster (pitch follows, as on a turntable)."""
    return soxr.resample(wave, rate, rate / factor).astype(np.float32)


def song_from(record: np.ndarray, rec_lo_s: float, rec_hi_s: float, factor: float, places_s: list[float],
              seconds: float, seed: int = 0, gain: float = 0.5, noise: float = 0.01,
              rate: int = SAMPLE_RATE) -> np.ndarray:
    """A song: record[rec_lo:rec_hi] sped up by ``factor``, scaled by ``gain``, at each of ``places_s``, over noise."""
    rng = np.random.default_rng(seed)
    excerpt = gain * speed(record[int(rec_lo_s * rate):int(rec_hi_s * rate)], factor, rate)
    song = noise * rng.standard_normal(int(seconds * rate))
    for place in places_s:
        lo = int(place * rate)
        song[lo:lo + excerpt.shape[0]] += excerpt[:song.shape[0] - lo]
    return song.astype(np.float32)


def records_csv(folder: Path, names: list[str], seeds: list[int]) -> Path:
    """Write one WAV per record and ``records.csv`` (``sample,record_path,sample_path``) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["sample,record_path,sample_path"]
    for name, seed in zip(names, seeds, strict=True):
        write(folder / f"{name}.wav", synth_record(seed))
        lines.append(f"{name},{name}.wav,ignored/{name}_cut.flac")
    (folder / "records.csv").write_text("\n".join(lines) + "\n")
    return folder / "records.csv"
