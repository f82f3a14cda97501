"""Synthesize the demo catalogue: records, their samples, and songs that sample them.

``python -m training.data.demo_data --out data/demo`` writes (16 kHz mono 16-bit FLAC, nothing downloaded):

- ``records/rNN.flac``: a record of ~8-12 s with its own music: key, scale, tempo, a 4-chord progression on
  a pad patch, a melody on a lead patch (additive or FM synthesis with its own envelope), an arpeggio or
  counter line, and a percussion figure;
- ``records/rNN_sample.flac``: the record's sample, a 2-5 s segment starting on a beat;
- ``songs/<split>/sNNNNN.flac``: songs built the way producers sample: a transformed copy of the sample
  (1-3 of speed, low/high/band-pass, gain ramp, chop; sometimes pitch, tempo, reverb, lo-fi) looped on the
  song's beat grid over synthesized boom-bap drums, a bass line and noise, present only in a span
  [start_s, end_s] of the song, at a random sample-to-accompaniment ratio;
- ``manifest.csv`` (song,sample,split,start_s,end_s,transforms,snr_db), ``records.csv``
  (sample,record_path,sample_path) and ``params.json``.

Every draw comes from ``numpy.random.default_rng([seed, stage, ...])``, so the catalogue is identical on
every run and for any worker count. A run is skipped when ``manifest.csv`` exists and ``params.json`` holds the
same parameters (``--force`` rebuilds). Song file names are a seeded permutation, so they do not reveal labels.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import click
import numpy as np

from serving.contract import log_to_stderr
from training.data import augment as A
from training.data import synth
from training.data.audio import SAMPLE_RATE, write_audio

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10), "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
}
BASE_TRANSFORMS = ("chop", "speed", "lowpass", "highpass", "bandpass", "gain")
EXTRA_TRANSFORMS = ("pitch", "tempo", "reverb", "lofi")
EXTRA_PROB = 0.25  # chance that a song also gets one of EXTRA_TRANSFORMS
TRANSFORM_ORDER = ("chop", "speed", "pitch", "tempo", "lowpass", "highpass", "bandpass", "lofi", "gain", "reverb")
SNR_DB = (-4.0, 9.0)  # sample-to-accompaniment power ratio over the sample's span
SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
SONG_PEAK = 0.9
MANIFEST_COLUMNS = ["song", "sample", "split", "start_s", "end_s", "transforms", "snr_db"]
RECORD_COLUMNS = ["sample", "record_path", "sample_path"]

Rng = np.random.Generator


@dataclass(frozen=True)
class DemoOptions:
    """What to build (everything that changes the output; compared with params.json)."""

    records: int = 24
    seed: int = 0
    train_songs: int = 10
    val_songs: int = 2
    test_songs: int = 2
    min_song_s: float = 12.0
    max_song_s: float = 20.0
    min_record_s: float = 8.0
    max_record_s: float = 12.0
    min_sample_s: float = 2.0
    max_sample_s: float = 5.0
    format_version: int = FORMAT_VERSION


# ---------------------------------------------------------------- records
def _chords(rng: Rng, scale: tuple[int, ...]) -> list[list[int]]:
    """A 4-chord progression of scale-degree triads (semitone offsets from the key root)."""
    degrees = [0, *rng.choice([1, 2, 3, 4, 5, 6], size=3, replace=True).tolist()]
    return [[scale[(d + k) % 7] + 12 * ((d + k) // 7) for k in (0, 2, 4)] for d in degrees]


def _add(out: np.ndarray, note: np.ndarray, pos: int, gain: float) -> None:
    """Add a rendered note at ``pos`` (truncated at the end)."""
    m = min(len(note), len(out) - pos)
    if m > 0:
        out[pos : pos + m] += gain * note[:m]


def _melody(rng: Rng, out: np.ndarray, patch: synth.Patch, root: int, scale: tuple[int, ...],
            step: int) -> None:
    """A 2-bar melody (random-walk over the scale, record-specific rhythm), repeated."""
    onsets = np.flatnonzero(rng.random(32) < rng.uniform(0.3, 0.6))
    onsets = onsets if len(onsets) else np.array([0])
    walk = np.cumsum(rng.choice([-2, -1, 1, 2, 0], size=len(onsets))) + int(rng.integers(0, 7))
    pitches = [root + 12 + scale[d % 7] + 12 * (d // 7) for d in np.clip(walk, -3, 12)]
    durations = np.diff(np.append(onsets, 32))
    for rep in range(len(out) // (32 * step) + 1):
        for o, p, d in zip(onsets, pitches, durations, strict=True):
            note = synth.render_note(patch, synth.midi_hz(p), d * step / SAMPLE_RATE * 0.9)
            _add(out, note, (rep * 32 + int(o)) * step, 0.5)


def _harmony(rng: Rng, out: np.ndarray, pad: synth.Patch, arp: synth.Patch, root: int,
             chords: list[list[int]], step: int) -> None:
    """Pad chords (one per bar) and an arpeggio/counter line in a record-specific pattern."""
    arp_steps = np.flatnonzero(rng.random(16) < 0.4)
    order = rng.permutation(3)
    bars = len(out) // (16 * step) + 1
    for bar in range(bars):
        chord = chords[bar % len(chords)]
        for semi in chord:
            _add(out, synth.render_note(pad, synth.midi_hz(root + semi), 16 * step / SAMPLE_RATE), bar * 16 * step, 0.18)
        for k, s in enumerate(arp_steps):
            semi = chord[int(order[k % 3])] + 12
            _add(out, synth.render_note(arp, synth.midi_hz(root + semi), step / SAMPLE_RATE * 1.5),
                 (bar * 16 + int(s)) * step, 0.25)


def _percussion(rng: Rng, out: np.ndarray, step: int) -> None:
    """A record-specific percussion figure (band-passed noise bursts: shaker / woodblock colours)."""
    hits = np.flatnonzero(rng.random(16) < 0.45)
    lo = float(rng.uniform(800, 4000))
    burst = A.filter_audio(A.noise(rng, int(0.06 * SAMPLE_RATE)), "bandpass", lo, min(lo * 2.5, 7000))
    burst *= np.exp(-np.arange(len(burst)) / (rng.uniform(0.005, 0.03) * SAMPLE_RATE)).astype(np.float32)
    for bar in range(len(out) // (16 * step) + 1):
        for s in hits:
            _add(out, burst, (bar * 16 + int(s)) * step, 0.15)


def make_record(rng: Rng, seconds: float) -> tuple[np.ndarray, float]:
    """Synthesize one record; returns (float32 audio peaking at 0.9, samples per beat)."""
    n = int(seconds * SAMPLE_RATE)
    bpm = float(rng.uniform(70, 140))
    step = int(round(60.0 / bpm / 4 * SAMPLE_RATE))  # sixteenth note
    scale = SCALES[str(rng.choice(list(SCALES)))]
    root = int(rng.integers(45, 58))
    out = np.zeros(n)
    _harmony(rng, out, synth.random_patch(rng, True), synth.random_patch(rng, False), root,
             _chords(rng, scale), step)
    _melody(rng, out, synth.random_patch(rng, False), root, scale, step)
    _percussion(rng, out, step)
    return (out * (SONG_PEAK / (np.max(np.abs(out)) + 1e-9))).astype(np.float32), 4.0 * step


def pick_sample(rng: Rng, record: np.ndarray, beat: float, opts: DemoOptions) -> tuple[int, int]:
    """(start, length) of the record's sample: starts on a beat, 2-5 s, inside the record."""
    length = int(rng.uniform(opts.min_sample_s, opts.max_sample_s) * SAMPLE_RATE)
    beats = max(1, int((len(record) - length) / beat))
    return int(int(rng.integers(0, beats)) * beat), length


# ------------------------------------------------------------------ songs
def _apply(name: str, x: np.ndarray, rng: Rng) -> tuple[np.ndarray, str]:
    """Apply one named transform with random parameters; returns (audio, description)."""
    if name == "chop":
        keep = int(rng.uniform(0.6, 1.0) * len(x))
        offset = int(rng.integers(0, len(x) - keep + 1))
        pieces = int(rng.integers(2, 5))
        return A.chop(x[offset : offset + keep], rng, pieces, gap_prob=0.0), f"chop(pieces={pieces})"
    if name in ("speed", "tempo"):
        f = A.random_speed_factor(rng, 0.2 if name == "speed" else 0.12)
        out = A.change_speed(x, f) if name == "speed" else A.time_stretch(x, f)
        return out, f"{name}(factor={f:.3f})"
    if name == "pitch":
        semi = float(rng.uniform(-2.0, 2.0))
        return A.shift_pitch(x, semi), f"pitch(semitones={semi:+.2f})"
    if name == "lowpass":
        fc = A.log_uniform(rng, 600, 4000)
        return A.filter_audio(x, name, high=fc, order=2), f"lowpass(fc={fc:.0f})"
    if name == "highpass":
        fc = A.log_uniform(rng, 150, 1500)
        return A.filter_audio(x, name, low=fc, order=2), f"highpass(fc={fc:.0f})"
    if name == "bandpass":
        fc, octv = A.log_uniform(rng, 300, 3000), float(rng.uniform(1.0, 3.0))
        lo, hi = fc / 2 ** (octv / 2), fc * 2 ** (octv / 2)
        return A.filter_audio(x, name, low=lo, high=hi, order=1), f"bandpass(lo={lo:.0f},hi={hi:.0f})"
    if name == "gain":
        g0, g1 = rng.uniform(-6.0, 6.0, size=2)
        return A.gain_ramp(x, g0, g1), f"gain({g0:+.1f}dB..{g1:+.1f}dB)"
    if name == "lofi":
        bits = int(rng.integers(5, 10))
        return A.bitcrush(x, bits), f"lofi(bits={bits})"
    decay = float(rng.uniform(0.2, 0.6))
    return A.reverb(x, rng, decay, 0.3), f"reverb(decay={decay:.2f}s)"


def _pick_transforms(rng: Rng) -> list[str]:
    """1-3 base transforms, sometimes one extra, in the fixed processing order."""
    names = [str(t) for t in rng.choice(BASE_TRANSFORMS, size=int(rng.integers(1, 4)), replace=False)]
    if rng.random() < EXTRA_PROB:
        names.append(str(rng.choice(EXTRA_TRANSFORMS)))
    return sorted(names, key=TRANSFORM_ORDER.index)


def build_song(segment: np.ndarray, rng: Rng, seconds: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Loop a transformed copy of ``segment`` on a beat grid over drums, bass and noise.

    Returns:
        (float32 song peaking at 0.9, manifest fields start_s/end_s/transforms/snr_db).
    """
    n = int(seconds * SAMPLE_RATE)
    bpm = float(rng.uniform(80, 100))
    beat = 60.0 / bpm * SAMPLE_RATE
    x, descs = segment.astype(np.float32), []
    for name in _pick_transforms(rng):
        x, desc = _apply(name, x, rng)
        descs.append(desc)
    period = int(round(max(1, round(len(x) / beat)) * beat))
    piece = A.fade(A.fix_length(x, period).copy())
    max_loops = max(1, min(6, (n - period) // period))
    loops = int(rng.integers(min(2, max_loops), max_loops + 1))
    start = int(round(int(rng.integers(0, max(1, int((n - loops * period) / beat) + 1))) * beat))
    end = min(n, start + loops * period)
    smp = np.zeros(n, dtype=np.float32)
    smp[start:end] = A.loop_to(piece, end - start)
    acc = synth.drum_loop(rng, n, bpm, float(rng.uniform(0.0, 0.3)))
    acc = acc + 10 ** (rng.uniform(-9, -2) / 20) * synth.bass_line(rng, n, bpm)
    snr = float(rng.uniform(*SNR_DB))
    p_acc, p_smp = np.mean(acc[start:end] ** 2), np.mean(smp[start:end] ** 2) + 1e-12
    mix = np.sqrt(p_acc / p_smp * 10 ** (snr / 10)) * smp + acc
    mix += A.noise(rng, n) * float(np.sqrt(np.mean(mix**2)) * 10 ** (rng.uniform(-45, -30) / 20))
    mix *= SONG_PEAK / (np.max(np.abs(mix)) + 1e-9)
    info = {"start_s": f"{start / SAMPLE_RATE:.3f}", "end_s": f"{end / SAMPLE_RATE:.3f}",
            "transforms": ";".join(descs), "snr_db": f"{snr:.2f}"}
    return mix.astype(np.float32), info


# ------------------------------------------------------------------- main
def _record_job(job: tuple[DemoOptions, int, str]) -> dict[str, Any]:
    """Synthesize and write one record and its sample."""
    opts, i, out = job
    rng = np.random.default_rng([opts.seed, 1, i])
    record, beat = make_record(rng, rng.uniform(opts.min_record_s, opts.max_record_s))
    start, length = pick_sample(rng, record, beat, opts)
    name = f"r{i:02d}"
    rec_path, smp_path = f"records/{name}.flac", f"records/{name}_sample.flac"
    write_audio(Path(out) / rec_path, record)
    write_audio(Path(out) / smp_path, record[start : start + length])
    return {"sample": name, "record_path": rec_path, "sample_path": smp_path,
            "segment": record[start : start + length]}


def _song_job(job: dict[str, Any]) -> dict[str, Any]:
    """Build and write one song."""
    opts: DemoOptions = job["opts"]
    rng = np.random.default_rng(job["seed_key"])
    mix, info = build_song(job["segment"], rng, rng.uniform(opts.min_song_s, opts.max_song_s))
    write_audio(Path(job["out"]) / job["song"], mix)
    return {"song": job["song"], "sample": job["sample"], "split": job["split"], **info}


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Write rows (extra keys ignored)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def is_current(out: Path, opts: DemoOptions) -> bool:
    """True when ``out`` already holds a catalogue built with exactly these options."""
    params = out / "params.json"
    if not (out / "manifest.csv").is_file() or not params.is_file():
        return False
    try:
        return json.loads(params.read_text()) == asdict(opts)
    except (OSError, ValueError):
        return False


def build_demo(out: str | Path, opts: DemoOptions, workers: int = 2, force: bool = False) -> Path:
    """Write the demo catalogue under ``out``; returns the manifest path (skips when up to date)."""
    out = Path(out)
    if not force and is_current(out, opts):
        logger.info("%s is up to date (same parameters); use --force to rebuild", out)
        return out / "manifest.csv"
    t0 = time.perf_counter()
    if (out / "params.json").is_file():  # our own earlier catalogue: drop its audio so no stale song remains
        for sub in ("songs", "records"):
            shutil.rmtree(out / sub, ignore_errors=True)
    (out / "params.json").unlink(missing_ok=True)  # a crash mid-way must not look up to date
    plan = [("train", opts.train_songs), ("val", opts.val_songs), ("test", opts.test_songs)]
    with get_context("fork").Pool(max(1, workers)) as pool:
        recs = pool.map(_record_job, [(opts, i, str(out)) for i in range(opts.records)])
        logger.info("%d records written (%.1f s)", len(recs), time.perf_counter() - t0)
        jobs = [{"opts": opts, "out": str(out), "sample": r["sample"], "split": sp, "segment": r["segment"],
                 "seed_key": [opts.seed, 2, i, SPLIT_CODE[sp], j]}
                for i, r in enumerate(recs) for sp, k in plan for j in range(k)]
        ids = np.random.default_rng([opts.seed, 3]).permutation(len(jobs))
        for job, sid in zip(jobs, ids, strict=True):
            job["song"] = f"songs/{job['split']}/s{sid:05d}.flac"
        rows = sorted(pool.map(_song_job, jobs, chunksize=4), key=lambda r: r["song"])
    _write_csv(out / "manifest.csv", rows, MANIFEST_COLUMNS)
    _write_csv(out / "records.csv", recs, RECORD_COLUMNS)
    (out / "params.json").write_text(json.dumps(asdict(opts), indent=1))
    logger.info("demo catalogue: %d records, %d songs in %.1f s -> %s", len(recs), len(rows),
                time.perf_counter() - t0, out / "manifest.csv")
    return out / "manifest.csv"


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="data/demo", show_default=True)
@click.option("--records", type=int, default=DemoOptions.records, show_default=True,
              help="number of records (labels)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--train-songs", type=int, default=DemoOptions.train_songs, show_default=True,
              help="train songs per record")
@click.option("--val-songs", type=int, default=DemoOptions.val_songs, show_default=True,
              help="val songs per record")
@click.option("--test-songs", type=int, default=DemoOptions.test_songs, show_default=True,
              help="test songs per record")
@click.option("--min-song-s", type=float, default=12.0, show_default=True)
@click.option("--max-song-s", type=float, default=20.0, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="processes (output is the same)")
@click.option("--force", is_flag=True, help="rebuild even when the catalogue is up to date")
def main(out: str, records: int, seed: int, train_songs: int, val_songs: int, test_songs: int,
         min_song_s: float, max_song_s: float, workers: int, force: bool) -> None:
    """Synthesize the deterministic demo catalogue (records, samples, songs, manifest.csv, records.csv)."""
    log_to_stderr(logging.INFO, "%(levelname)s %(name)s: %(message)s")
    if records < 1 or train_songs < 1 or min_song_s > max_song_s:
        raise click.BadParameter("need --records >= 1, --train-songs >= 1 and --min-song-s <= --max-song-s")
    opts = DemoOptions(records=records, seed=seed, train_songs=train_songs, val_songs=val_songs,
                       test_songs=test_songs, min_song_s=min_song_s, max_song_s=max_song_s)
    click.echo(build_demo(Path(out), opts, workers=workers, force=force))


if __name__ == "__main__":
    main()
