"""The retrieval benchmark, end to end from full records (the full-records protocol): one table of the bars.

    .venv/bin/python -m bench.accuracy.retrieval_eval BENCH_DIR --out runs/retrieval [--weights W] [--filler CSV]

``BENCH_DIR`` is a folder built by the real-music benchmark builder (``manifest.csv``, ``records.csv``,
``open_records.csv``, ``meta.json``). Steps, each a real command whose wall time is reported:

1. **data**: copies of the manifest and the two record lists with absolute paths and **without**
   ``sample_path`` (the model and the catalogue see whole records, as a user has them);
2. **train**: ``ast-train --manifest`` with the default recipe (skipped with ``--weights``);
3. **export**: ``ast-export onnx``;
4. **index**: ``ast-serve index build`` twice: *closed* (``records.csv``) and *all* (+ ``open_records.csv``),
   and with ``--filler`` a third, *all + filler*;
5. **identify**: the ``test`` and ``open`` songs against each catalogue (``--format jsonl``);
6. **score**: the rows below.

Rows: closed test songs top-1 (index = all); open songs top-1 (index = all; their records were never trained
on), each *forced* (the best guess, ``--threshold 0``) and *accepted* (correct and above the catalogue's
calibrated threshold), and the forced top-3; record-span overlap among correct matches (the match's ``record_start_s``..``record_end_s`` against
``meta.json``'s ``sample_in_record_s`` .. ``+ sample_s``); with the closed index, the share of open songs
answered "no match" at the default threshold and the share of test songs correct *and* accepted; top-1 (forced and accepted) with
the filler records added; identify and index-build speed as real-time factors (audio seconds per wall second,
2 cores).
"""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import soundfile as sf

logger = logging.getLogger("bench.accuracy.retrieval_eval")

BIN = Path(sys.executable).parent
SPLITS = ("test", "open")


@dataclass
class Song:
    """One benchmark song and its truth."""

    path: str
    sample: str
    split: str


def _run(name: str, cmd: list[str], stdout: Path | None = None) -> float:
    """Run one step; returns its wall time. A failing step stops the benchmark with its stderr tail."""
    logger.info("%s: %s", name, " ".join(cmd))
    start = time.perf_counter()
    with open(stdout, "w", encoding="utf-8") if stdout else open("/dev/null", "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: some inputs failed, the others are still reported
        sys.exit(f"retrieval_eval: step {name} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return seconds


def _records_copy(src: Path, dst: Path) -> float:
    """``sample,record_path`` only, absolute paths; returns the records' total duration in seconds."""
    rows = list(csv.DictReader(open(src, encoding="utf-8-sig")))
    total = 0.0
    with open(dst, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sample", "record_path"])
        for row in rows:
            path = (src.parent / row["record_path"]).resolve()
            writer.writerow([row["sample"], str(path)])
            total += sf.info(str(path)).duration
    return total


def prepare(bench: Path, out: Path) -> tuple[list[Song], dict[str, float]]:
    """Step 1: the full-records copies; returns the songs to identify and the record durations."""
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    durations = {"closed": _records_copy(bench / "records.csv", data / "records.csv"),
                 "open": _records_copy(bench / "open_records.csv", data / "open_records.csv")}
    rows = list(csv.DictReader(open(bench / "manifest.csv", encoding="utf-8-sig")))
    with open(data / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["song", "sample", "split", "start_s", "end_s"], extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "song": str((bench / row["song"]).resolve())})
    songs = [Song(str((bench / r["song"]).resolve()), r["sample"], r["split"]) for r in rows if r["split"] in SPLITS]
    return songs, durations


def _results(path: Path) -> dict[str, dict]:
    return {json.loads(line)["path"]: json.loads(line) for line in path.read_text().splitlines() if line.strip()}


def _true_span(meta: dict, sample: str) -> tuple[float, float]:
    rec = next(r for r in meta["records"] if r["sample"] == sample)
    return rec["sample_in_record_s"], rec["sample_in_record_s"] + rec["sample_s"]


def score(songs: list[Song], results: dict[str, dict], meta: dict) -> dict[str, float]:
    """top-1 per split, record-span overlap among correct matches, accepted-and-correct / rejected shares."""
    out: dict[str, float] = {}
    overlaps = []
    for split in SPLITS:
        picked = [s for s in songs if s.split == split]
        best = [(results.get(s.path) or {}).get("matches") or [] for s in picked]
        correct = [bool(m) and m[0]["sample"] == s.sample for s, m in zip(picked, best, strict=True)]
        out[f"{split}_top1"] = sum(correct) / max(1, len(picked))
        out[f"{split}_top3"] = sum(s.sample in [x["sample"] for x in m[:3]] for s, m in zip(picked, best,
                                                                                          strict=True)) / max(1, len(picked))
        out[f"{split}_no_match"] = sum(not m for m in best) / max(1, len(picked))
        for s, m, ok in zip(picked, best, correct, strict=True):
            if ok and "record_start_s" in m[0]:
                lo, hi = _true_span(meta, s.sample)
                overlaps.append(m[0]["record_start_s"] < hi and lo < m[0]["record_end_s"])
    out["span_overlap"] = sum(overlaps) / max(1, len(overlaps))
    return out


def _identify(model: Path, catalogue: Path, songs: list[Song], out: Path, *extra: str) -> float:
    cmd = [str(BIN / "ast-serve"), "-q", "identify", "--model", str(model), "--index", str(catalogue),
           "--format", "jsonl", *extra, *[s.path for s in songs]]
    return _run(f"identify {catalogue.name}", cmd, stdout=out)


def _index(model: Path, csvs: list[Path], folder: Path) -> float:
    cmd = [str(BIN / "ast-serve"), "-q", "index", "build", "--model", str(model), "--out", str(folder)]
    for path in csvs:
        cmd += ["--records", str(path)]
    return _run(f"index {folder.name}", cmd)


def table(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| bar | measured | goal |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


@click.command()
@click.argument("bench", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Use these weights instead of training (step 2 skipped).")
@click.option("--filler", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV (sample,record_path) of extra records no song samples (distractors).")
def main(bench: Path, out: Path, weights: Path | None, filler: Path | None) -> None:
    """Train, export, index and identify from full records; print the bars as one table."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    songs, durations = prepare(bench, out)
    data, times = out / "data", {}
    if weights is None:
        times["train"] = _run("train", [str(BIN / "ast-train"), "--manifest", str(data / "manifest.csv"),
                                        "--out", str(out / "train")])
        weights = out / "train" / "modelo_audio.pth"
    model = out / "model.onnx"
    times["export"] = _run("export", [str(BIN / "ast-export"), "-q", "onnx", "--weights", str(weights), "--out",
                                      str(model), "--manifest", str(data / "manifest.csv")])
    catalogues = {"closed": [data / "records.csv"], "all": [data / "records.csv", data / "open_records.csv"]}
    if filler is not None:
        catalogues["filler"] = catalogues["all"] + [filler]
    meta = json.loads((bench / "meta.json").read_text())
    scores = {}
    for name, csvs in catalogues.items():
        times[f"index_{name}"] = _index(model, csvs, out / f"cat_{name}")
        times[f"identify_{name}"] = _identify(model, out / f"cat_{name}", songs, out / f"identify_{name}.jsonl")
        scores[name] = score(songs, _results(out / f"identify_{name}.jsonl"), meta)
    for name in ("all", "filler") if filler is not None else ("all",):  # no threshold: the best guess
        forced = out / ("identify_forced.jsonl" if name == "all" else f"identify_{name}_forced.jsonl")
        _identify(model, out / f"cat_{name}", songs, forced, "--threshold", "0", "--top-k", "3")
        scores["forced" if name == "all" else f"{name}_forced"] = score(songs, _results(forced), meta)
    song_s = sum(sf.info(s.path).duration for s in songs)
    rows = [
        ("closed test songs, index = all, top-1 (forced / accepted)",
         f"{scores['forced']['test_top1']:.4f} / {scores['all']['test_top1']:.4f}", ">= 0.99"),
        ("open songs, index = all, top-1 (forced / accepted)",
         f"{scores['forced']['open_top1']:.4f} / {scores['all']['open_top1']:.4f}", ">= 0.95"),
        ("forced top-3, test / open", f"{scores['forced']['test_top3']:.4f} / {scores['forced']['open_top3']:.4f}",
         "-"),
        ("record span overlap among correct (index = all)", f"{scores['all']['span_overlap']:.4f}", ">= 0.90"),
        ("index = closed: open songs 'no match'", f"{scores['closed']['open_no_match']:.4f}", ">= 0.95"),
        ("index = closed: test songs correct and accepted", f"{scores['closed']['test_top1']:.4f}", ">= 0.95"),
        ("identify real-time factor (index = all)", f"{song_s / times['identify_all']:.1f}x", ">= 60x"),
        ("index build real-time factor (all)", f"{(durations['closed'] + durations['open']) / times['index_all']:.1f}x",
         ">= 20x"),
    ]
    if "train" in times:
        rows.append(("training (default recipe)", f"{times['train'] / 60:.1f} min", "<= 60 min"))
    if "filler" in scores:
        rows += [(f"filler added: {split} top-1 (forced / accepted)",
                  f"{scores['filler_forced'][f'{key}_top1']:.4f} / {scores['filler'][f'{key}_top1']:.4f}", "drop <= 0.01")
                 for split, key in (("closed test", "test"), ("open", "open"))]
    (out / "retrieval_eval.json").write_text(json.dumps({"scores": scores, "times_s": times,
                                                         "song_seconds": song_s, "record_seconds": durations},
                                                        indent=1))
    click.echo(table(rows))


if __name__ == "__main__":
    main()
