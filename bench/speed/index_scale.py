"""The catalogue at scale: a synthetic store of N windows (default 10 M, about 15,000 four-minute records at a
0.5 s hop over one time-scale, or 3,000 over the catalogue's five), and the search + vote cost of one 3-minute song (issue 12).

    .venv/bin/python -m bench.speed.index_scale --windows 10000000 --work runs/index_scale [--song-s 180]

1. **build** (one process): random unit vectors (``--dim``, 128 as the fingerprint) are added in chunks to the
   project's :class:`serving.vectors.FaissStore`, which turns IVF-PQ past its flat limit exactly as
   ``ast-serve index build`` does; the store and an id table ``[N, 3]`` (record, scale, start) as the
   catalogue stores it are written to ``--work``. Each record is ``--record-windows`` consecutive windows.
2. **query** (a fresh process, so its peak RSS is the query side only): load the store and the id table, then
   time ``--reps`` searches of one song's windows (``song_s / hop`` queries, k = 16, the serving ``nprobe``)
   and the time-consistent vote (:func:`serving.voting.occurrences`). Queries are stored vectors plus noise
   (a song that samples records), so the vote has real runs to find.

Prints one JSON object: build seconds, index bytes, query seconds (median), peak RSS of the query process.
The embedding and the verification of a song do not grow with the catalogue; ``ast-serve identify`` on a real
catalogue measures them (bench.accuracy.retrieval_eval).
"""

from __future__ import annotations

import json
import logging
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np

from serving.contract import INDEX_SCALES
from serving.retrieval import DEFAULT_K
from serving.vectors import FaissStore
from serving.voting import occurrences

logger = logging.getLogger("bench.speed.index_scale")
CHUNK = 500_000
RATE = 16000
HOP_S = 0.5
STORE = "index.faiss"
TABLE = "ids.npy"


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)  # [n, d]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build(windows: int, dim: int, record_windows: int, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    store = FaissStore(dim)
    start = time.perf_counter()
    for lo in range(0, windows, CHUNK):
        n = min(CHUNK, windows - lo)
        store.add(np.arange(lo, lo + n, dtype=np.int64), _unit(rng, n, dim))
        logger.info("added %d / %d (%s) %.0f s", lo + n, windows, store.kind, time.perf_counter() - start)
    build_s = time.perf_counter() - start
    store.save(work, STORE)
    ids = np.arange(windows, dtype=np.int64)
    per_record = record_windows * len(INDEX_SCALES)  # a record: its windows at each time-scale in turn
    scale = (ids % per_record) // record_windows
    start = (ids % record_windows) * HOP_S * RATE * np.asarray(INDEX_SCALES)[scale]  # in original samples
    table = np.stack([ids // per_record, scale, start.astype(np.int64)], axis=1)  # [N, 3]
    np.save(work / TABLE, table)
    return {"windows": windows, "kind": store.kind, "build_s": round(build_s, 1), "index_bytes": store.nbytes,
            "file_bytes": (work / STORE).stat().st_size, "table_bytes": table.nbytes}


def query(work: Path, dim: int, song_s: float, reps: int) -> dict:
    start = time.perf_counter()
    store = FaissStore.load(work, STORE, dim)
    table = np.load(work / TABLE, mmap_mode=None)
    load_s = time.perf_counter() - start
    rng = np.random.default_rng(1)
    m = int(song_s / HOP_S)
    first = int(rng.integers(0, 10 * m))  # inside the first chunk, whose vectors the build's seed replays
    ids = np.arange(first, first + m, dtype=np.int64)
    base = _unit(np.random.default_rng(0), first + m, dim)[first:]  # [m, d]: the song samples this run
    queries = base + 0.05 * rng.standard_normal(base.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    song_t = np.arange(m) * HOP_S
    times, search_times, found = [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        sims, hits = store.search(queries, DEFAULT_K)
        search_times.append(time.perf_counter() - t0)
        found = occurrences(song_t, sims, hits, table, np.asarray(INDEX_SCALES), RATE, HOP_S)
        times.append(time.perf_counter() - t0)
    recall = float(np.mean([ids[j] in hits[j] for j in range(m)]))
    return {"song_s": song_s, "queries": m, "load_s": round(load_s, 2), "query_s": round(statistics.median(times), 3),
            "query_s_all": [round(t, 3) for t in times],
            "search_s": round(statistics.median(search_times), 3), "self_recall_at_k": round(recall, 3),
            "occurrences": len(found), "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> int:
    """This process's peak resident set (``VmHWM``): ``ru_maxrss`` keeps the maximum across ``execve``, so a
    query process started by the build reported the build's peak (3722 MB against 694 MB alone; NOTES #29)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


@click.command()
@click.option("--windows", type=int, default=10_000_000, show_default=True)
@click.option("--dim", type=int, default=128, show_default=True)
@click.option("--record-windows", type=int, default=480, show_default=True, help="Windows per record (4 min at 0.5 s).")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--song-s", type=float, default=180.0, show_default=True)
@click.option("--reps", type=int, default=5, show_default=True)
@click.option("--query-only", is_flag=True, help="Only the query step (on a store built before), in this process.")
@click.option("--build-only", is_flag=True, help="Only the build step (query later, on a quiet machine).")
def main(windows: int, dim: int, record_windows: int, work: Path, song_s: float, reps: int, query_only: bool,
         build_only: bool) -> None:
    """Build a synthetic store of WINDOWS vectors, then time one song's search and vote in a fresh process."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if query_only:
        click.echo(json.dumps(query(work, dim, song_s, reps)))
        return
    report = build(windows, dim, record_windows, work)
    if build_only:
        click.echo(json.dumps(report))
        return
    out = subprocess.run([sys.executable, "-m", "bench.speed.index_scale", "--work", str(work), "--dim", str(dim),
                          "--song-s", str(song_s), "--reps", str(reps), "--query-only"],
                         capture_output=True, text=True, check=True)
    report.update(json.loads(out.stdout.strip().splitlines()[-1]))
    click.echo(json.dumps(report))


if __name__ == "__main__":
    main()
