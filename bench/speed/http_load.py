"""Load test ``ast-serve http``: requests/s, audio s per wall s, latency percentiles and batch size per concurrency.

    .venv/bin/python -m bench.speed.http_load --model M.onnx --songs DIR_OR_FILE [--songs ...] [--concurrency 1,8,32]

It first times ``ast-serve identify``'s pipeline in-process over the same files (the baseline, model already
loaded, so neither side pays start-up), then starts ``ast-serve http`` as a subprocess on a free loopback
port, waits for ``/readyz``, and for each concurrency level posts every song ``--rounds`` times with httpx
async clients. Mean batch size (windows per ONNX Runtime run) and requests per run come from ``/metrics``
deltas. ``--model`` is an exported model (e.g. ``make export``'s ``runs/demo/modelo_audio.onnx``).
``--json FILE`` writes the figures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx
import numpy as np

log = logging.getLogger("bench.speed.http_load")

ROOT = Path(__file__).resolve().parents[2]
AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3", ".aiff", ".opus")
READY_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 600.0
PERCENTILES = (50, 95, 99)


def song_files(songs: tuple[str, ...], limit: int) -> list[Path]:
    files: list[Path] = []
    for entry in map(Path, songs):
        files += sorted(p for p in entry.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES) if entry.is_dir() else [entry]
    return files[:limit] if limit else files


def baseline(model: Path, files: list[Path], device: str, threads: int, batch: int, backend: str,
             precision: str) -> dict[str, float]:
    """``ast-serve identify``'s throughput over ``files`` (in-process, the session loaded beforehand)."""
    from serving.identify import IdentifyOptions, identify
    from serving.session import ModelSession, SessionOptions

    session = ModelSession(model, SessionOptions(device=device, intra_threads=threads, backend=backend,
                                                 precision=precision))
    t0 = time.perf_counter()
    results = list(identify(session, [str(f) for f in files], IdentifyOptions(batch_size=batch)))
    wall = time.perf_counter() - t0
    audio = sum(r.duration_s or 0.0 for r in results)
    return {"songs": len(results), "wall_s": wall, "audio_s_per_s": audio / wall, "songs_per_s": len(results) / wall}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, port: int, args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "serving.cli", "-q", "http", "--model", str(model.resolve()), "--port", str(port), *args]
    log.info("starting: %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}: {proc.stderr.read().strip() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not become ready")


def scrape(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out = {}
    for name in ("ast_batch_size_sum", "ast_batch_size_count", "ast_batch_requests_sum"):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


async def drive(url: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], list[dict], float]:
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        async def one(body: bytes) -> tuple[float, dict]:
            async with gate:
                t0 = time.perf_counter()
                resp = await client.post("/v1/identify", content=body)
                return time.perf_counter() - t0, (resp.json() if resp.status_code == 200 else {"status": resp.status_code})

        t0 = time.perf_counter()
        done = await asyncio.gather(*(one(b) for b in bodies))
        wall = time.perf_counter() - t0
    return [d[0] for d in done], [d[1] for d in done], wall


def level(url: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    before = scrape(url)
    latencies, answers, wall = asyncio.run(drive(url, bodies, concurrency))
    after = scrape(url)
    runs = after["ast_batch_size_count"] - before["ast_batch_size_count"]
    ok = [a for a in answers if "duration_s" in a]
    audio = sum(a["duration_s"] or 0.0 for a in ok)
    pct = np.percentile(np.array(latencies) * 1000.0, PERCENTILES)
    return {"concurrency": concurrency, "requests": len(bodies), "failed": len(bodies) - len(ok),
            "requests_per_s": len(bodies) / wall, "audio_s_per_s": audio / wall,
            **{f"p{p}_ms": float(v) for p, v in zip(PERCENTILES, pct, strict=True)},
            "mean_batch": (after["ast_batch_size_sum"] - before["ast_batch_size_sum"]) / runs if runs else 0.0,
            "requests_per_run": (after["ast_batch_requests_sum"] - before["ast_batch_requests_sum"]) / runs if runs else 0.0}


def table(base: dict[str, float], rows: list[dict[str, Any]]) -> str:
    lines = [f"ast-serve identify (in-process): {base['songs']} songs, {base['audio_s_per_s']:.1f} audio s/s, "
             f"{base['songs_per_s']:.2f} songs/s",
             f"{'conc':>4} {'req/s':>8} {'audio s/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
             f"{'batch':>6} {'req/run':>7} {'vs CLI':>7} {'failed':>6}"]
    for r in rows:
        lines.append(f"{r['concurrency']:>4} {r['requests_per_s']:>8.2f} {r['audio_s_per_s']:>10.1f} "
                     f"{r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['mean_batch']:>6.1f} "
                     f"{r['requests_per_run']:>7.2f} {r['ratio_to_cli']:>7.2f} {r['failed']:>6}")
    return "\n".join(lines)


@click.command()
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Exported .onnx model, e.g. runs/demo/modelo_audio.onnx.")
@click.option("--songs", multiple=True, required=True, help="Audio files or folders (searched recursively).")
@click.option("--limit", type=int, default=32, show_default=True, help="Use at most this many songs (0 = all).")
@click.option("--concurrency", default="1,8,32", show_default=True, help="Comma-separated in-flight levels.")
@click.option("--rounds", type=int, default=1, show_default=True, help="Times each song is posted per level.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--backend", default="auto", show_default=True, help="As ast-serve's --backend (both sides).")
@click.option("--precision", default="auto", show_default=True, help="As ast-serve's --precision (both sides).")
@click.option("--threads", type=int, default=0, show_default=True, help="ORT intra-op threads (both sides).")
@click.option("--max-batch", type=int, default=32, show_default=True)
@click.option("--max-delay-ms", type=float, default=5.0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(model: Path | None, songs: tuple[str, ...], limit: int, concurrency: str, rounds: int, device: str,
         backend: str, precision: str, threads: int, max_batch: int, max_delay_ms: float,
         json_out: Path | None) -> None:
    """Drive ast-serve http at each concurrency level and compare with ast-serve identify."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    files = song_files(songs, limit)
    if not files:
        raise SystemExit("no audio files found under --songs")
    base = baseline(model, files, device, threads, max_batch, backend, precision)
    bodies = [f.read_bytes() for f in files] * rounds
    port = _free_port()
    server = start_server(model, port, ["--device", device, "--backend", backend, "--precision", precision,
                                        "--threads", str(threads), "--max-batch",
                                        str(max_batch), "--max-delay-ms", str(max_delay_ms),
                                        "--max-queue", "1024", "--timeout-s", str(REQUEST_TIMEOUT_S)])
    try:
        rows = [level(f"http://127.0.0.1:{port}", bodies, int(c)) for c in concurrency.split(",")]
    finally:
        server.terminate()
        server.wait(60)
    for row in rows:
        row["ratio_to_cli"] = row["audio_s_per_s"] / base["audio_s_per_s"]
    click.echo(table(base, rows))
    if json_out is not None:
        json_out.write_text(json.dumps({"model": str(model), "cpus": os.cpu_count(), "baseline": base,
                                        "levels": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
