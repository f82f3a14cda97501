"""ast-serve http --index: retrieval answers equal ``identify --index --format json``; a bad catalogue exits 2."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from serving.cli import main
from serving.http.indexed import open_catalogue, retrieval_identifier
from serving.http.options import HttpOptions
from tests.serving.fake_model import build_fingerprint_model
from tests.serving.http_helpers import cli_server, metric, running, session, wait_ready
from tests.serving.retrieval_helpers import records_csv, song_from, synth_record, write

ROOT = Path(__file__).resolve().parents[2]
HOP = "0.1"  # the fake's 1 s window wants a fine hop (as the catalogue tests)
NAMES, SEEDS = ["alpha", "beta", "gamma"], [1, 2, 3]


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    base = tmp_path_factory.mktemp("http-index")
    model = build_fingerprint_model(base / "fp.onnx")
    csv = records_csv(base / "records", NAMES, SEEDS)
    res = _run("index", "build", "--model", model, "--records", csv, "--out", base / "cat", "--hop", HOP)
    assert res.exit_code == 0, res.stderr
    songs = [write(base / "beta-song.wav", song_from(synth_record(2), 3.0, 8.0, 1.0, [1.5, 8.0], 14.0)),
             write(base / "noise.wav", song_from(synth_record(9), 0.0, 1.0, 1.0, [], 6.0))]
    return model, base / "cat", songs


def test_retrieval_through_http_equals_identify_index(indexed, monkeypatch: pytest.MonkeyPatch) -> None:
    model, cat, songs = indexed
    monkeypatch.chdir(songs[0].parent)
    res = _run("identify", "--model", model, "--index", cat, "--format", "json", "--top-k", "2", "--device", "cpu",
               *[s.name for s in songs])
    expected = json.loads(res.stdout)
    assert expected[0]["matches"] and expected[0]["matches"][0]["sample"] == "beta"
    assert "record_start_s" in expected[0]["matches"][0]
    with cli_server("--model", str(model), "--index", str(cat), "--max-delay-ms", "2") as (url, _, lines), \
            httpx.Client(base_url=url, timeout=60) as client:
        wait_ready(client, url)
        for song, want in zip(songs, expected, strict=True):
            got = client.post("/v1/identify", params={"top_k": "2"}, files={"file": (song.name, song.read_bytes())})
            assert got.status_code == 200 and got.json() == want, "".join(lines)
        assert metric(client.get("/metrics").text, "ast_batch_size_count") > 0  # embeddings went through the batcher


def test_retrieval_identifier_in_process(indexed) -> None:
    """The adapter alone: concurrent retrieval requests through one server, answers stable."""
    model, cat, songs = indexed
    make = retrieval_identifier(open_catalogue(str(cat), session(model)), threads=2)
    with running(model, HttpOptions(max_delay_ms=20.0), identifier=make) as srv, \
            httpx.Client(base_url=srv.url, timeout=60) as client:
        wait_ready(client, srv.url)
        first = [client.post("/v1/identify", content=s.read_bytes()).json() for s in songs]
        assert first[0]["matches"][0]["sample"] == "beta"
        again = asyncio.run(_concurrently(srv.url, [songs[0].read_bytes()] * 4))
        assert all(a == first[0] for a in again)


async def _concurrently(url: str, bodies: list[bytes]) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        answers = await asyncio.gather(*(client.post("/v1/identify", content=b) for b in bodies))
    return [a.json() for a in answers]


def test_bad_catalogue_exits_2_before_listening(indexed, tmp_path: Path) -> None:
    model, _, _ = indexed
    proc = subprocess.run([sys.executable, "-m", "serving.cli", "http", "--model", str(model), "--device", "cpu",
                           "--index", str(tmp_path / "nothing"), "--port", "0"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [proc.stderr.strip().splitlines()[-1]] and "catalogue folder not found" in errors[0], proc.stderr
