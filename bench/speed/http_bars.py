"""The service bars of ``ast-serve http`` on a real model: latency, a mixed 1,000-request load, overload, SIGTERM.

    python -m bench.speed.http_bars --model runs/demo/modelo_audio.onnx --songs data/demo/songs/test --long SONG30

1. **latency**: one 30 s song (``--long``) at concurrency 1, ``LATENCY_REQUESTS`` times: p95 against the CLI's
   in-process time for the same song (model loaded, so neither side pays start-up);
2. **load**: ``LOAD_REQUESTS`` requests at concurrency 32, good songs mixed with bad bodies (random bytes, text,
   a truncated FLAC, empty): every request answered, good ones equal to the CLI's result, bad ones a 4xx, and the
   server's peak RSS (sampled from /proc while it runs);
3. **overload**: a server with ``--max-queue 4`` and 64 concurrent requests: 503s with ``Retry-After``, no crash,
   ``/healthz`` answering meanwhile;
4. **SIGTERM** with 8 requests in flight: all 8 answered, exit 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path

import click
import httpx
import numpy as np

from bench.speed.http_load import _free_port, song_files, start_server

LATENCY_REQUESTS = 20
LOAD_REQUESTS = 1000
LOAD_CONCURRENCY = 32
OVERLOAD_CONCURRENCY = 64
INFLIGHT = 8
TIMEOUT_S = 600.0


def _cli_results(model: Path, files: list[Path]) -> tuple[dict[str, dict], float]:
    from serving.identify import IdentifyOptions, identify
    from serving.session import ModelSession, SessionOptions

    session = ModelSession(model, SessionOptions(backend="auto"))
    list(identify(session, [str(files[0])], IdentifyOptions()))  # warm-up
    t0 = time.perf_counter()
    out = {str(r.path): r.to_dict() for r in identify(session, [str(f) for f in files], IdentifyOptions())}
    return out, time.perf_counter() - t0


def _bad_bodies(good: bytes) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(0)
    return [("random", rng.bytes(20000)), ("text", b"not audio at all\n" * 100), ("truncated", good[:2000]),
            ("empty", b"")]


def _rss_sampler(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    peak[0] = max(peak[0], int(line.split()[1]))
        except OSError:
            return
        time.sleep(0.05)


async def _post_all(url: str, bodies: list[bytes], concurrency: int) -> list[tuple[float, httpx.Response | None]]:
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S, limits=limits) as client:
        async def one(body: bytes) -> tuple[float, httpx.Response | None]:
            async with gate:
                t0 = time.perf_counter()
                try:
                    resp = await client.post("/v1/identify", content=body)
                except httpx.HTTPError:
                    return time.perf_counter() - t0, None
                return time.perf_counter() - t0, resp
        return await asyncio.gather(*(one(b) for b in bodies))


def latency(url: str, model: Path, long_song: Path) -> dict[str, float]:
    _, cli_s = _cli_results(model, [long_song])
    body = long_song.read_bytes()
    times = [t for t, _ in asyncio.run(_post_all(url, [body] * LATENCY_REQUESTS, 1))]
    p95 = float(np.percentile(np.array(times) * 1000, 95))
    return {"cli_ms": cli_s * 1000, "http_p95_ms": p95, "ratio": p95 / (cli_s * 1000)}


def load(url: str, pid: int, files: list[Path], cli: dict[str, dict]) -> dict[str, object]:
    good = [(str(f), f.read_bytes()) for f in files]
    bad = _bad_bodies(good[0][1])
    plan = [good[i % len(good)] if i % 5 else ("bad", bad[(i // 5) % len(bad)]) for i in range(LOAD_REQUESTS)]
    bodies = [item[1] if kind == "bad" else item for kind, item in plan]
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=_rss_sampler, args=(pid, stop, peak), daemon=True)
    sampler.start()
    answers = asyncio.run(_post_all(url, bodies, LOAD_CONCURRENCY))
    stop.set()
    lost = sum(r is None for _, r in answers)
    wrong_good, wrong_bad = 0, 0
    for (kind, _), (_, resp) in zip(plan, answers, strict=True):
        if resp is None:
            continue
        if kind == "bad":
            wrong_bad += not (400 <= resp.status_code < 500 and "error" in resp.json())
        else:
            got = {k: v for k, v in resp.json().items() if k != "path"}
            want = {k: v for k, v in cli[kind].items() if k != "path"}
            wrong_good += resp.status_code != 200 or got != want
    return {"requests": LOAD_REQUESTS, "lost": lost, "good_not_equal_cli": wrong_good, "bad_not_4xx": wrong_bad,
            "peak_rss_mb": peak[0] / 1024}


def overload(model: Path, body: bytes) -> dict[str, object]:
    port = _free_port()
    server = start_server(model, port, ["--max-queue", "4", "--max-batch", "8"])
    url = f"http://127.0.0.1:{port}"
    health: list[int] = []

    def poll() -> None:
        for _ in range(20):
            health.append(httpx.get(f"{url}/healthz", timeout=10).status_code)
            time.sleep(0.05)
    poller = threading.Thread(target=poll)
    poller.start()
    answers = asyncio.run(_post_all(url, [body] * OVERLOAD_CONCURRENCY, OVERLOAD_CONCURRENCY))
    poller.join()
    codes = [r.status_code if r is not None else None for _, r in answers]
    retry = all("retry-after" in r.headers for _, r in answers if r is not None and r.status_code == 503)
    alive = server.poll() is None
    server.terminate()
    server.wait(60)
    return {"ok": codes.count(200), "503": codes.count(503), "retry_after_on_every_503": retry,
            "lost": codes.count(None), "server_alive": alive, "healthz_all_200": set(health) == {200}}


def sigterm(model: Path, body: bytes) -> dict[str, object]:
    port = _free_port()
    server = start_server(model, port, [])
    url = f"http://127.0.0.1:{port}"

    async def run() -> list[tuple[float, httpx.Response | None]]:
        task = asyncio.ensure_future(_post_all(url, [body] * INFLIGHT, INFLIGHT))
        await asyncio.sleep(0.3)
        os.kill(server.pid, signal.SIGTERM)
        return await task
    answers = asyncio.run(run())
    code = server.wait(120)
    return {"answered_200": sum(r is not None and r.status_code == 200 for _, r in answers), "of": INFLIGHT,
            "exit_code": code}


@click.command()
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--songs", multiple=True, required=True, help="Audio files or folders (the good requests).")
@click.option("--long", "long_song", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="A 30 s song for the latency bar.")
def main(model: Path, songs: tuple[str, ...], long_song: Path) -> None:
    """Measure the service bars; print one JSON object."""
    files = song_files(songs, 0)
    cli, _ = _cli_results(model, files)
    port = _free_port()
    server = start_server(model, port, ["--max-queue", "1024", "--timeout-s", str(TIMEOUT_S)])
    url = f"http://127.0.0.1:{port}"
    try:
        out = {"latency": latency(url, model, long_song), "load": load(url, server.pid, files, cli)}
    finally:
        server.terminate()
        server.wait(60)
    out["overload"] = overload(model, long_song.read_bytes())
    out["sigterm"] = sigterm(model, long_song.read_bytes())
    click.echo(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
