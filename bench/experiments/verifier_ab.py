"""Verifier A/B on the same voted candidates: which alignment score picks the sampled record?

Retrieval (embed, k-NN, vote) runs once per song; then every variant of the alignment score re-verifies the
same candidates (``--candidates`` records, the catalogue's own search), so the only thing that differs between
rows is the score that ranks them. Printed per variant: top-1 among the candidates (test / open songs),
the candidates' recall (the true record among them: the ceiling of any verifier), and the separation of the
true record's score from the best wrong one (AUC over songs whose candidates hold the truth), which is what
the open-set threshold lives on.

    python -m bench.experiments.verifier_ab BENCH --model M.onnx --catalogue CAT [--candidates 8 --k 32]

Variants (each replaces :func:`serving.verify_align.best_lag`, the lag search of one hypothesis):

- ``ncc``: the shipped score, double-centred NCC over the whole patch;
- ``bands``: per-band temporal NCC (each band centred and normalised over time), averaged over the best
  :data:`TOP_BANDS` fraction of bands: a band-limited sample (band-pass, lo-fi) correlates in the bands it
  kept, whatever the accompaniment does in the others.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import serving.verify_align as va
from serving.catalogue import Catalogue
from serving.contract import load_audio
from serving.embedding import embed_wave
from serving.retrieval import RetrievalOptions, Retriever, _Song
from serving.session import ModelSession, SessionOptions
from serving.voting import by_record, occurrences

log = logging.getLogger(__name__)

TOP_BANDS = 1 / 3
Scorer = Callable[[np.ndarray, np.ndarray, int, int], tuple[float, int]]


def band_scores(song: np.ndarray, record: np.ndarray, base: int, max_lag: int) -> tuple[np.ndarray, int] | None:
    """``([L, B], first lag)``: per-band temporal NCC of ``song`` ``[T, B]`` against ``record`` at ``base + lag``
    for every lag that overlaps the whole song patch (None when no lag does)."""
    frames = song.shape[0]
    lo, hi = max(0, base - max_lag), min(record.shape[0] - frames, base + max_lag)
    if hi < lo:
        return None
    a = song - song.mean(axis=0, keepdims=True)  # [T, B]
    a_norm = np.sqrt((a * a).sum(axis=0))  # [B]
    win = sliding_window_view(record[lo:hi + frames], frames, axis=0)  # [L, B, T]
    num = np.einsum("lbt,tb->lb", win, a)  # [L, B]
    rec = record[lo:hi + frames].astype(np.float64)
    c1 = np.concatenate([np.zeros((1, rec.shape[1])), np.cumsum(rec, axis=0)])
    c2 = np.concatenate([np.zeros((1, rec.shape[1])), np.cumsum(rec * rec, axis=0)])
    s1, s2 = c1[frames:] - c1[:-frames], c2[frames:] - c2[:-frames]  # [L, B]
    var = np.maximum(s2 - s1 * s1 / frames, 0.0)
    ok = (var > 1e-9) & (a_norm[None, :] > 1e-9)
    return np.where(ok, num / np.sqrt(np.where(ok, var, 1.0)) / np.where(a_norm > 1e-9, a_norm, 1.0), 0.0), lo - base


DETREND_FRAMES = 31  # ~0.5 s: slower level changes (fades, gain ramps) correlate between any two patches


def detrend(x: np.ndarray, frames: int = DETREND_FRAMES) -> np.ndarray:
    """``x`` ``[T, B]`` minus its centred moving average over ``frames`` frames (edges: the shorter window)."""
    c = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0, dtype=np.float64)])  # [T + 1, B]
    idx = np.arange(x.shape[0])
    lo, hi = np.maximum(0, idx - frames // 2), np.minimum(x.shape[0], idx + frames // 2 + 1)
    return (x - (c[hi] - c[lo]) / (hi - lo)[:, None]).astype(np.float32)


def _overlap(song: np.ndarray, record: np.ndarray, base: int) -> tuple[np.ndarray, int] | None:
    """The song frames that ``record`` placed at ``base`` covers, and the new base (None: too few)."""
    lo, hi = max(0, -base), min(song.shape[0], record.shape[0] - base)
    if hi - lo < max(va.MIN_FRAMES, va.MIN_OVERLAP * song.shape[0]):
        return None
    return song[lo:hi], base + lo


def bands_lag(song: np.ndarray, record: np.ndarray, base: int, max_lag: int,
              fraction: float = TOP_BANDS, trend: int = 0) -> tuple[float, int]:
    cropped = _overlap(song, record, base)
    if cropped is None:
        return va.NO_SCORE, 0
    song, base = cropped
    if trend:
        song, record = detrend(song, trend), detrend(record, trend)
    out = band_scores(song, record, base, max_lag)
    if out is None:
        return va.NO_SCORE, 0
    corr, first = out  # [L, B]
    top = max(1, int(round(fraction * corr.shape[1])))
    score = np.sort(corr, axis=1)[:, -top:].mean(axis=1)  # [L]
    best = int(np.argmax(score))
    return float(score[best]), first + best


PEAK_FRAMES, PEAK_BANDS = 3, 2  # a peak is the maximum of its (2 * 3 + 1) frames x (2 * 2 + 1) bands
TOLERANCE = 1  # a record peak is found when the song has a peak within +-1 frame and +-1 band


def peak_map(x: np.ndarray) -> np.ndarray:
    """``[T, B]`` float32 1/0: local maxima of ``x`` that stand above their band's and frame's means."""
    pad = np.pad(x, ((PEAK_FRAMES, PEAK_FRAMES), (PEAK_BANDS, PEAK_BANDS)), mode="constant", constant_values=-np.inf)
    local = sliding_window_view(pad, (2 * PEAK_FRAMES + 1, 2 * PEAK_BANDS + 1)).max(axis=(2, 3))  # [T, B]
    centred = x - x.mean(axis=0, keepdims=True)
    centred -= centred.mean(axis=1, keepdims=True)
    return ((x >= local) & (centred > 0)).astype(np.float32)


def dilate(m: np.ndarray, r: int = TOLERANCE) -> np.ndarray:
    pad = np.pad(m, r)
    return sliding_window_view(pad, (2 * r + 1, 2 * r + 1)).max(axis=(2, 3))


def peaks_lag(song: np.ndarray, record: np.ndarray, base: int, max_lag: int) -> tuple[float, int]:
    """Fraction of the record's spectral peaks that the song has too (within the tolerance), beyond chance."""
    cropped = _overlap(song, record, base)
    if cropped is None:
        return va.NO_SCORE, 0
    song, base = cropped
    frames = song.shape[0]
    first, last = max(0, base - max_lag), min(record.shape[0] - frames, base + max_lag)
    if last < first:
        return va.NO_SCORE, 0
    found = dilate(peak_map(song))  # [T, B]
    density = float(found.mean())
    rec_peaks = peak_map(record[first:last + frames])  # [R', B]
    win = sliding_window_view(rec_peaks, frames, axis=0)  # [L, B, T]
    hits = np.einsum("lbt,tb->l", win, found)  # [L]
    count = win.sum(axis=(1, 2))  # [L]
    score = np.where(count > 0, (hits - density * count) / np.maximum(count, 1) / max(1e-6, 1 - density), va.NO_SCORE)
    best = int(np.argmax(score))
    return float(score[best]), first - base + best


VARIANTS: dict[str, Scorer] = {
    "ncc": va.best_lag,
    "bands": bands_lag,
    "bands_half": functools.partial(bands_lag, fraction=0.5),
    "bands_eighth": functools.partial(bands_lag, fraction=1 / 8),
    "bands_all": functools.partial(bands_lag, fraction=1.0),
    "flux": functools.partial(bands_lag, trend=DETREND_FRAMES),
    "flux_half": functools.partial(bands_lag, fraction=0.5, trend=DETREND_FRAMES),
    "flux_all": functools.partial(bands_lag, fraction=1.0, trend=DETREND_FRAMES),
    "flux_fast": functools.partial(bands_lag, trend=9),
    "peaks": peaks_lag,
}


def _songs(bench: Path) -> list[tuple[str, str, str]]:
    with open(bench / "manifest.csv", newline="") as fh:
        return [(str(bench / r["song"]), r["sample"], r["split"]) for r in csv.DictReader(fh)
                if r["split"] in ("test", "open")]


def _ranked(ret: Retriever, wave: np.ndarray):
    starts, emb = embed_wave(ret.session, wave, ret.hop, ret.opts.batch_size)
    sims, ids = ret.catalogue.store.search(emb, min(ret.opts.k, ret.catalogue.store.ntotal), None)
    song_t = starts / ret.rate
    found = occurrences(song_t, sims, ids, ret.catalogue.table, ret.catalogue.scales, ret.rate,
                        ret.hop / ret.rate, ret.opts.min_votes)
    song = _Song(song_t, va.log_spectrogram(wave, ret.rate), wave.shape[0] / ret.rate)
    return by_record(found, ret.opts.candidates), song


def _auc(right: list[float], wrong: list[float]) -> float:
    r, w = np.asarray(right)[:, None], np.asarray(wrong)[None, :]
    return float(((r > w) + 0.5 * (r == w)).mean()) if r.size and w.size else float("nan")


@click.command()
@click.argument("bench", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--catalogue", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--candidates", default=8, show_default=True)
@click.option("--k", default=32, show_default=True)
@click.option("--variants", default=",".join(VARIANTS), show_default=True)
@click.option("--limit", default=0, help="Songs per split (0: all).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Per-song JSON lines.")
def main(bench: Path, model: str, catalogue: str, candidates: int, k: int, variants: str, limit: int,
         out: Path | None) -> None:
    """Re-verify the same candidates with each alignment score; print one row per variant."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    session = ModelSession(model, SessionOptions(backend="auto"))  # as ast-serve identify
    cat = Catalogue.open(catalogue, session.metadata)
    ret = Retriever(session, cat, RetrievalOptions(k=k, candidates=candidates))
    names = variants.split(",")
    songs = _songs(bench)
    if limit:
        songs = [s for split in ("test", "open") for s in [x for x in songs if x[2] == split][:limit]]
    rows = []
    for i, (path, truth, split) in enumerate(songs):
        ranked, song = _ranked(ret, load_audio(path, ret.rate))
        row = {"song": path, "split": split, "truth": truth,
               "candidates": [cat.meta.records[rv.record].name for rv in ranked]}
        for name in names:
            va.best_lag = VARIANTS[name]
            scores = {}
            for rv in ranked:
                v = ret._verify(rv, song)
                scores[cat.meta.records[rv.record].name] = v.raw if v is not None else va.NO_SCORE
            row[name] = scores
        va.best_lag = VARIANTS["ncc"]
        rows.append(row)
        if i % 20 == 0:
            log.info("%d/%d songs", i, len(songs))
    if out is not None:
        out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    click.echo(report(rows, names))


def report(rows: list[dict], names: list[str]) -> str:
    lines = ["| variant | top-1 test | top-1 open | recall test / open | AUC right vs best wrong |", "|---|---|---|---|---|"]
    for name in names:
        cells, right, wrong = [], [], []
        for split in ("test", "open"):
            sel = [r for r in rows if r["split"] == split]
            hits = [bool(r[name]) and max(r[name], key=r[name].get) == r["truth"] for r in sel]
            cells.append(f"{np.mean(hits):.3f}" if sel else "-")
        for r in rows:
            if r["truth"] in r[name]:
                right.append(r[name][r["truth"]])
                others = [v for n, v in r[name].items() if n != r["truth"]]
                if others:
                    wrong.append(max(others))
        recall = [np.mean([r["truth"] in r["candidates"] for r in rows if r["split"] == s]) for s in ("test", "open")]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {recall[0]:.3f} / {recall[1]:.3f} | "
                     f"{_auc(right, wrong):.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
