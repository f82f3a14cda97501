"""Verifier A/B on the same voted candidates: which alignment score picks the sampled record?

Retrieval (embed, k-NN, vote) runs once per song; then every variant of the verification re-verifies the
same candidates (``--candidates`` records, the catalogue's own search), so the only thing that differs between
rows is the score that ranks them. Printed per variant: top-1 among the candidates (test / open songs), alone
and fused with the vote rank as ``identify`` does (:data:`serving.verified.RANK_PENALTY`), the candidates'
recall (the true record among them: the ceiling of any verifier), and the separation of the true record's
score from the best wrong one (AUC over songs whose candidates hold the truth), which is what the open-set
threshold lives on.

    python -m bench.experiments.verifier_ab BENCH --model M.onnx --catalogue CAT [--candidates 8 --k 32]

With ``--whole`` each variant reruns voting and verification on the song's cached neighbours (as ``identify``
does, best raw score first), so knobs that change *which* records and places are verified (the landmark
candidates and places, the occurrences per candidate) are measured too; the rows then give forced top-1 and, on
the same songs, how many each variant gains and loses against the first one.

Variants set constants of :mod:`serving.verify_align` or :mod:`serving.retrieval` for the duration of their row (:data:`VARIANTS`). The
normalised cross-correlation it replaced (NOTES #21) is measured by running this tool at commit df038f3.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

import click
import numpy as np

import serving.retrieval as retrieval
import serving.verify_align as va
from serving.catalogue import Catalogue
from serving.contract import load_audio
from serving.retrieval import RetrievalOptions, Retriever
from serving.session import ModelSession, SessionOptions
from serving.verified import RANK_PENALTY

log = logging.getLogger(__name__)

VARIANTS: dict[str, dict[str, object]] = {  # bench/NOTES.md #22 and #25 have the rows measured
    "peaks": {},  # the shipped constants (the z-score since #25)
    "lift": {"STATISTIC": "lift"},  # the fraction of peaks found beyond chance (shipped until #25)
    "global_chance": {"DENSITY_FRAMES": 1 << 20},  # one chance rate for the whole segment
    "chance_32": {"DENSITY_FRAMES": 32},
    "tol2": {"TOLERANCE_FRAMES": 2},
    "tol3": {"TOLERANCE_FRAMES": 3},
    "band_tol0": {"TOLERANCE_BANDS": 0},
    "band_tol2": {"TOLERANCE_BANDS": 2},
    "lag8": {"MAX_LAG_FRAMES": 8},  # +-0.13 s: the lag range before session 7
    "lag32": {"MAX_LAG_FRAMES": 32},
    "lag96": {"MAX_LAG_FRAMES": 96},
    "tol2_lag8": {"TOLERANCE_FRAMES": 2, "MAX_LAG_FRAMES": 8},
    "coarse_grid": {"MAX_FINE_STEPS": va.FINE_SCALE_STEPS},  # no finer speed grid for longer segments
    "small_peaks": {"PEAK_FRAMES": 2, "PEAK_BANDS": 1},  # denser peaks
    "occ1": {"VERIFY_OCCURRENCES": 1},  # serving.retrieval's: occurrences verified per candidate
    "occ2": {"VERIFY_OCCURRENCES": 2},  # shipped until #46
    "no_search": {"SEARCH_RECORD": False},  # voted occurrences only (shipped until #28)
    "occ0": {"VERIFY_OCCURRENCES": 0},  # the whole-record search's proposal alone (#29)
    "landmark_candidates_10": {"LANDMARK_CANDIDATES": 10},  # with --whole (NOTES #47)
    "landmark_places_30": {"LANDMARK_PLACES": 30},  # with --whole (NOTES #47)
}


def _with(settings: dict[str, object]):
    """Set ``settings`` on :mod:`serving.verify_align` (or :mod:`serving.retrieval`, which holds the name);
    returns the previous values."""
    module = lambda name: va if hasattr(va, name) else retrieval  # noqa: E731
    old = {name: getattr(module(name), name) for name in settings}
    for name, value in settings.items():
        setattr(module(name), name, value)
    return old


def _songs(bench: Path) -> list[tuple[str, str, str]]:
    with open(bench / "manifest.csv", newline="") as fh:
        return [(str(bench / r["song"]), r["sample"], r["split"]) for r in csv.DictReader(fh)
                if r["split"] in ("test", "open")]


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
@click.option("--whole", is_flag=True, help="Vote and verify again per variant (candidate and landmark knobs).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Per-song JSON lines.")
def main(bench: Path, model: str, catalogue: str, candidates: int, k: int, variants: str, limit: int,
         whole: bool, out: Path | None) -> None:
    """Re-verify the same candidates with each alignment score (``--whole``: vote and verify again); print one row
    per variant."""
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
        wave = load_audio(path, ret.rate)
        hits = ret.search(wave)
        ranked, song = ret.vote(wave, hits)
        row = {"song": path, "split": split, "truth": truth,
               "candidates": [cat.meta.records[rv.record].name for rv in ranked]}
        for name in names:
            old = _with(VARIANTS[name])
            row[name] = _whole(ret, wave, hits) if whole else _reverified(ret, ranked, song)
            _with(old)
        rows.append(row)
        if i % 20 == 0:
            log.info("%d/%d songs", i, len(songs))
    if out is not None:
        out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    click.echo(whole_report(rows, names) if whole else report(rows, names))


def _reverified(ret: Retriever, ranked: list, song) -> dict[str, float]:
    """Each voted candidate's alignment score, verified again with the variant's constants."""
    records = ret.catalogue.meta.records
    return {records[rv.record].name: v.alignment.score if (v := ret._verify(rv, song)) is not None else va.NO_SCORE
            for rv in ranked}


def _whole(ret: Retriever, wave: np.ndarray, hits) -> dict[str, float]:
    """Every verified candidate's raw score after voting and verifying again on the cached neighbours."""
    records = ret.catalogue.meta.records
    return {records[v.votes.record].name: float(v.raw) for v in ret._candidates(wave, hits, None)}  # best first


def whole_report(rows: list[dict], names: list[str]) -> str:
    """Forced top-1 per variant (best raw score), and the songs it gains and loses against the first variant."""
    right = {name: [_right(r, name, False) for r in rows] for name in names}
    lines = ["| variant | forced top-1 test / open | vs " + names[0] + ": + / - |", "|---|---|---|"]
    for name in names:
        top1 = " / ".join(_top1(rows, split, name, False) for split in ("test", "open"))
        plus = sum(h and not b for h, b in zip(right[name], right[names[0]], strict=True))
        minus = sum(b and not h for h, b in zip(right[name], right[names[0]], strict=True))
        lines.append(f"| {name} | {top1} | +{plus} -{minus} |")
    return "\n".join(lines)


def _fused(row: dict, name: str) -> dict[str, float]:
    """The variant's scores as ``identify`` ranks them: less the penalty per place in the vote ranking."""
    return {c: row[name][c] - RANK_PENALTY * i for i, c in enumerate(row["candidates"]) if c in row[name]}


def _right(row: dict, name: str, fused: bool) -> bool:
    """Whether the variant's best-scored record is the song's sampled one (the first of equal bests)."""
    scores = _fused(row, name) if fused else row[name]
    return bool(scores) and max(scores, key=scores.get) == row["truth"]


def _top1(rows: list[dict], split: str, name: str, fused: bool) -> str:
    """Top-1 of one variant over one split, as ``a / b`` cells are built."""
    hits = [_right(r, name, fused) for r in rows if r["split"] == split]
    return f"{np.mean(hits):.3f}" if hits else "-"


def report(rows: list[dict], names: list[str]) -> str:
    lines = ["| variant | top-1 test / open | fused with the vote rank | recall test / open | AUC right vs best wrong |",
             "|---|---|---|---|---|"]
    for name in names:
        right, wrong = [], []
        alone, fused = (" / ".join(_top1(rows, split, name, f) for split in ("test", "open")) for f in (False, True))
        for r in rows:
            if r["truth"] in r[name]:
                right.append(r[name][r["truth"]])
                others = [v for n, v in r[name].items() if n != r["truth"]]
                if others:
                    wrong.append(max(others))
        recall = [np.mean([r["truth"] in r["candidates"] for r in rows if r["split"] == s]) for s in ("test", "open")]
        lines.append(f"| {name} | {alone} | {fused} | {recall[0]:.3f} / {recall[1]:.3f} | {_auc(right, wrong):.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
