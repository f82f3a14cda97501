"""Score `ast-serve identify` output against a manifest: top-1, span overlap, and open-set rejection.

    ast-serve identify --format jsonl SONGS... > out.jsonl
    .venv/bin/python -m bench.accuracy.sampleid_eval MANIFEST out.jsonl [--splits test,open]

Rows of ``out.jsonl`` (or a ``--format json`` array) are matched to manifest rows by the song's resolved
path. A relative ``path`` in the results is tried against the current folder, the results file's folder and
the manifest's folder, so results written from any folder (``cd data/demo && ast-serve identify songs/...``)
match, and this runs from any folder (``python -m bench.accuracy.sampleid_eval``; the package is installed with the
project). For the known split(s) (default ``test``) it prints top-1 accuracy and, among correct songs, the
share whose predicted span overlaps ``start_s``..``end_s``. When an ``open`` split is present (songs sampling
records the model never saw), it prints, per threshold, the share of known songs still correctly identified
at or above it and the share of open songs rejected below it; an ideal model keeps both at 1.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from serving.contract import read_manifest_rows, song_path, split_name

THRESHOLDS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class Scored:
    """One song: its truth (None for open-set songs), the predicted sample, score and span."""

    truth: str | None
    sample: str | None
    score: float
    span: tuple[float, float] | None
    true_span: tuple[float, float] | None

    @property
    def correct(self) -> bool:
        return self.truth is not None and self.sample == self.truth

    @property
    def overlaps(self) -> bool:
        if self.span is None or self.true_span is None:
            return False
        return self.span[0] < self.true_span[1] and self.true_span[0] < self.span[1]


def _manifest_rows(manifest: Path, splits: set[str]) -> dict[str, dict[str, str]]:
    """Resolved song path -> manifest row (split as the contract compares it), for the wanted splits."""
    rows = {}
    _, raw = read_manifest_rows(manifest)
    for row in raw:
        split = split_name(row.get("split"))
        if split in splits:
            rows[str(song_path(manifest, row["song"]))] = {**row, "split": split}
    return rows


def _row_of(path: str, rows: dict[str, dict[str, str]], folders: list[Path]) -> dict[str, str] | None:
    """The manifest row of a result's ``path``: as given when absolute, else under each of ``folders``."""
    candidates = [Path(path)] if os.path.isabs(path) else [folder / path for folder in folders]
    for candidate in candidates:
        row = rows.get(str(candidate.resolve()))
        if row is not None:
            return row
    return None


def _results(results: Path) -> list[dict]:
    """The objects of a jsonl file or of one JSON array (``--format json``)."""
    text = results.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _span(row: dict[str, str]) -> tuple[float, float] | None:
    start, end = row.get("start_s") or "", row.get("end_s") or ""
    return (float(start), float(end)) if start and end else None


def load_scored(manifest: Path, results: Path, known: set[str]) -> list[Scored]:
    """Join serving results with the manifest (songs absent from the manifest are ignored)."""
    rows = _manifest_rows(manifest, known | {"open"})
    folders = [Path.cwd(), results.resolve().parent, manifest.resolve().parent]
    out = []
    for res in _results(results):
        row = _row_of(res["path"], rows, folders)
        if row is None or res.get("error"):
            continue
        best = (res.get("matches") or [None])[0]
        out.append(Scored(truth=row["sample"] if row["split"] in known else None,
                          sample=best["sample"] if best else None, score=best["score"] if best else 0.0,
                          span=(best["start_s"], best["end_s"]) if best else None, true_span=_span(row)))
    return out


def report(scored: list[Scored]) -> str:
    """The printed summary."""
    known = [s for s in scored if s.truth is not None]
    unknown = [s for s in scored if s.truth is None]
    correct = [s for s in known if s.correct]
    with_span = [s for s in correct if s.true_span is not None]
    lines = [f"known songs: {len(known)}  top-1: {len(correct) / max(1, len(known)):.4f}"]
    if with_span:
        share = sum(s.overlaps for s in with_span) / len(with_span)
        lines.append(f"span overlap among correct songs: {share:.4f} ({len(with_span)} songs)")
    if unknown:
        lines.append(f"open-set songs: {len(unknown)}")
        lines.append("threshold  known kept+correct  open rejected")
        for t in THRESHOLDS:
            kept = sum(s.correct and s.score >= t for s in known) / max(1, len(known))
            rejected = sum(s.score < t for s in unknown) / len(unknown)
            lines.append(f"{t:9.2f}  {kept:18.4f}  {rejected:13.4f}")
    return "\n".join(lines)


@click.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--splits", default="test", show_default=True, help="Comma-separated known splits.")
def main(manifest: Path, results: Path, splits: str) -> None:
    """Top-1, span overlap and open-set rejection of RESULTS (ast-serve jsonl) against MANIFEST."""
    scored = load_scored(manifest, results, set(splits.split(",")))
    if not scored:
        sys.exit(f"sampleid_eval: no row of {results} matches a song of {manifest}")
    click.echo(report(scored))


if __name__ == "__main__":
    main()
