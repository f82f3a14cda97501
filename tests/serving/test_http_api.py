"""ast-serve http: the same answers as the CLI, readiness, the API key, metadata, metrics, batching."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from serving.cli import main
from serving.http.options import HttpOptions
from tests.serving.conftest import write_tone
from tests.serving.fake_model import LABELS
from tests.serving.http_helpers import metric, running, wait_ready

OPTIONS = HttpOptions(max_batch=32, max_delay_ms=20.0, max_queue=64, max_body_mb=1.0, max_audio_s=8.0,
                      timeout_s=30.0)


@pytest.fixture(scope="module")
def server(fake_model: Path):
    with running(fake_model, OPTIONS) as srv:
        with httpx.Client(timeout=30) as client:
            wait_ready(client, srv.url)
        yield srv


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("songs")
    return [write_tone(d / "a.flac", 3.2), write_tone(d / "b.wav", 1.7, rate=44100, channels=2),
            write_tone(d / "c.ogg", 2.3, fmt="OGG", subtype="VORBIS"), write_tone(d / "short.wav", 0.05)]


def _cli_json(model: Path, songs: list[Path], *flags: str, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    monkeypatch.chdir(songs[0].parent)  # relative names, as the upload's file name
    res = CliRunner().invoke(main, ["identify", "--model", str(model), "--device", "cpu", "--backend", "ort",
                                    "--precision", "fp32", "--format", "json",
                                    *flags, *[p.name for p in songs]], catch_exceptions=False)
    return json.loads(res.stdout)


@pytest.mark.parametrize("query,flags", [({}, []), ({"top_k": "3", "timeline": "true"}, ["--top-k", "3", "--timeline"]),
                                         ({"threshold": "0.4", "top_k": "4"}, ["--threshold", "0.4", "--top-k", "4"])])
def test_identify_equals_cli_json(server, fake_model: Path, songs: list[Path], query: dict, flags: list,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _cli_json(fake_model, songs, *flags, monkeypatch=monkeypatch)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for song, want in zip(songs, expected, strict=True):
            multi = client.post("/v1/identify", params=query, files={"file": (song.name, song.read_bytes())})
            raw = client.post("/v1/identify", params={**query, "name": song.name}, content=song.read_bytes(),
                              headers={"content-type": "audio/flac"})
            assert multi.status_code == raw.status_code == 200, multi.text
            assert multi.json() == raw.json() == want
    assert expected[-1]["duration_s"] == pytest.approx(0.05, abs=1e-3) and expected[-1]["matches"]


def test_raw_body_without_a_name_is_upload(server, songs: list[Path]) -> None:
    resp = httpx.post(f"{server.url}/v1/identify", content=songs[0].read_bytes(), timeout=30)
    assert resp.status_code == 200 and resp.json()["path"] == "upload"


def test_model_metrics_health_and_page(server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "alive"}
        model = client.get("/v1/model").json()
        assert model["weights_sha256"] == "0" * 64 and model["provider"] == "CPUExecutionProvider"
        assert model["backend"] == "ort" and model["precision"] == "fp32"
        assert model["labels"] == LABELS and model["limits"]["max_batch"] == OPTIONS.max_batch
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<canvas" in page.text and "<audio" in page.text and "v1/identify" in page.text
        assert "http://" not in page.text and "https://" not in page.text  # no CDN, nothing fetched elsewhere
        text = client.get("/metrics").text
        for name in ("ast_http_requests_total", "ast_http_request_seconds_bucket", "ast_batch_queue_windows",
                     "ast_batch_size_bucket", "ast_windows_per_second", "ast_http_requests_in_flight"):
            assert name in text, name


async def _many(url: str, bodies: list[bytes], concurrency: int) -> list[httpx.Response]:
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(body: bytes) -> httpx.Response:
            async with gate:
                return await client.post("/v1/identify", content=body)
        return await asyncio.gather(*(one(b) for b in bodies))


def test_concurrent_requests_are_batched_and_none_lost(server, songs: list[Path]) -> None:
    before = httpx.get(f"{server.url}/metrics").text
    bodies = [songs[i % 3].read_bytes() for i in range(64)]
    answers = asyncio.run(_many(server.url, bodies, 16))
    assert [r.status_code for r in answers] == [200] * 64
    for i, resp in enumerate(answers):
        assert resp.json() == answers[i % 3].json()  # the same song, the same answer, whatever its batch
    after = httpx.get(f"{server.url}/metrics").text
    runs = metric(after, "ast_batch_size_count") - metric(before, "ast_batch_size_count")
    windows = metric(after, "ast_batch_size_sum") - metric(before, "ast_batch_size_sum")
    shared = metric(after, "ast_batch_requests_sum") - metric(before, "ast_batch_requests_sum")
    assert windows / runs > 1 and shared / runs > 1, (windows, shared, runs)  # windows of several requests merged
    assert metric(after, "ast_http_requests_total", endpoint="/v1/identify", status="200") >= 64


def test_not_ready_before_warm_up(fake_model: Path, songs: list[Path]) -> None:
    gate = threading.Event()
    with running(fake_model, OPTIONS, warmup=lambda: gate.wait(20)) as srv, httpx.Client(base_url=srv.url) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {"error": "model is warming up"}
        busy = client.post("/v1/identify", content=songs[0].read_bytes())
        assert busy.status_code == 503 and busy.headers["retry-after"] and "warming up" in busy.json()["error"]
        assert client.get("/v1/model").json()["ready"] is False
        gate.set()
        wait_ready(client, srv.url)
        assert client.post("/v1/identify", content=songs[0].read_bytes()).status_code == 200


def test_api_key(fake_model: Path, songs: list[Path]) -> None:
    key = "s3cret-key"
    opts = HttpOptions(api_key=key, max_delay_ms=0.0)
    with running(fake_model, opts) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        wait_ready(client, srv.url)  # the health checks need no key
        assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200
        body = songs[0].read_bytes()
        for path, method in (("/v1/identify", "POST"), ("/v1/model", "GET"), ("/metrics", "GET")):
            for headers, why in (({}, "missing"), ({"authorization": "Bearer nope"}, "wrong"),
                                 ({"authorization": f"Basic {key}"}, "missing"), ({"authorization": "Bearer"}, "wrong")):
                resp = client.request(method, path, headers=headers, content=body if method == "POST" else None)
                assert resp.status_code == 401 and why in resp.json()["error"], (path, headers, resp.text)
                assert resp.headers["www-authenticate"] == "Bearer"
            good = client.request(method, path, headers={"authorization": f"Bearer {key}"},
                                  content=body if method == "POST" else None)
            assert good.status_code == 200, good.text
