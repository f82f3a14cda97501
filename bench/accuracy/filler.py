"""Filler records for the retrieval benchmark: other music, whole tracks or pieces, that no song samples.

    .venv/bin/python -m bench.accuracy.filler --sources filler.txt --out FILLER_DIR [--piece-s S] [--max-pieces 6]
        [--exclude-copies-of BENCH_SOURCES_DIR]

``filler.txt`` lists audio files, one per line, as ``bench/accuracy/fetch_filler.sh DIR`` (or
``../shared/bench/fetch_sources.sh filler DIR``) prints them: other Debian music packages, like Sample100's
filler tracks. Each file is decoded at 16 kHz mono and written as FLAC, whole by default (what the bar means),
or with ``--piece-s`` as consecutive pieces of that many seconds (at most ``--max-pieces`` per file; a later
piece shorter than half that is dropped). Pieces of one looping track are near-duplicates of each other, which
the catalogue's calibration then meets as null queries that match. The records are listed in
``FILLER_DIR/filler.csv`` (``sample,record_path``, absolute paths), the CSV that
``bench.accuracy.retrieval_eval --filler`` takes. A file that fails to decode is one line on stderr and is
skipped.

Filler must be *other* music. Debian packages share files: supertuxkart-data ships supertux's
``beneath_the_rabbit_hole.ogg`` byte for byte, and a dev-plus record is cut from it (bench/NOTES.md #38).
``--exclude-copies-of DIR`` (repeatable; the folder the benchmark's sources were fetched into) skips every
source file whose bytes equal a file under it, with one line each.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

import click
import soundfile as sf

from serving.catalogue_format import file_sha256
from serving.contract import AudioError, load_audio

logger = logging.getLogger("bench.accuracy.filler")
SAMPLE_RATE = 16000


def cut(wave, piece: int, max_pieces: int) -> list:
    """Consecutive ``piece``-sample slices of ``wave`` (0: the whole wave). The first is always kept (a short track
    is one record); a later one only if it is at least half a piece."""
    if piece <= 0:
        return [wave]
    pieces = [wave[i:i + piece] for i in range(0, len(wave), piece)][:max_pieces]
    return pieces[:1] + [p for p in pieces[1:] if len(p) >= piece // 2]


def copies_of(folders: tuple[Path, ...]) -> set[str]:
    """SHA-256 of every file under ``folders``."""
    return {file_sha256(p) for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


@click.command()
@click.option("--sources", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--piece-s", type=float, default=0.0, show_default=True, help="Piece length (0: whole files).")
@click.option("--max-pieces", type=int, default=6, show_default=True)
@click.option("--exclude-copies-of", "exclude", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Skip sources byte-identical to a file under this folder (the benchmark's own sources).")
def main(sources: Path, out: Path, piece_s: float, max_pieces: int, exclude: tuple[Path, ...]) -> None:
    """Cut the listed files into filler records and write filler.csv."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    taken = copies_of(exclude)
    rows, samples = [], 0
    for n, line in enumerate(sources.read_text().splitlines()):
        path = line.strip()
        if not path:
            continue
        if taken and Path(path).is_file() and file_sha256(path) in taken:
            logger.warning("%s: skipped: a copy of one of the benchmark's own sources", path)
            continue
        try:
            wave = load_audio(path, SAMPLE_RATE)
        except AudioError as err:
            logger.warning("%s: skipped: %s", path, err)
            continue
        for k, piece in enumerate(cut(wave, int(piece_s * SAMPLE_RATE), max_pieces)):
            dst = (out / f"f{n:03d}_{k}.flac").resolve()
            sf.write(str(dst), piece, SAMPLE_RATE)
            rows.append((f"filler{n:03d}_{k}", str(dst)))
            samples += len(piece)
    with open(out / "filler.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sample", "record_path"])
        writer.writerows(rows)
    logger.info("%d filler records (%.1f h) in %s", len(rows), samples / SAMPLE_RATE / 3600, out / "filler.csv")


if __name__ == "__main__":
    main()
