"""ast-serve http: every kind of bad request gets its status and a one-line JSON error, never a traceback."""

from __future__ import annotations

import asyncio
import io
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from serving.http.options import HttpOptions
from serving.matches import SongResult
from tests.serving.conftest import write_tone
from tests.serving.http_helpers import metric, running, wait_ready

OPTIONS = HttpOptions(max_batch=32, max_delay_ms=1.0, max_body_mb=1.0, max_audio_s=8.0, timeout_s=30.0)


@pytest.fixture(scope="module")
def server(fake_model: Path):
    with running(fake_model, OPTIONS) as srv:
        with httpx.Client() as client:
            wait_ready(client, srv.url)
        yield srv


def _wav(seconds: float, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * rate), np.int16), rate, format="WAV")
    return buf.getvalue()


def _bad_requests(d: Path) -> list[tuple[str, dict, int, str | None]]:
    """(what, request kwargs, status, expected text in the error) for each bad-request kind."""
    full = write_tone(d / "full.flac", 4.0).read_bytes()
    octet = {"content-type": "application/octet-stream"}
    good = {"content": full}
    return [
        ("empty body", {"content": b""}, 422, "empty file"),
        ("random bytes", {"content": np.random.default_rng(0).bytes(3000)}, 415, "not a readable audio file"),
        ("text", {"content": b"just text\n", "headers": octet}, 415, "not a readable audio file"),
        ("path as body", {"content": b"/etc/passwd", "headers": octet}, 415, "not a readable audio file"),
        ("no samples", {"content": _wav(0.0)}, 422, "contains no audio samples"),
        ("long file", {"content": _wav(9.5, 8000)}, 413, "audio is 9.5 s long"),
        ("huge declared body", {"content": b"\0" * (OPTIONS.max_body_bytes + 1)}, 413, "--max-body-mb"),
        ("huge chunked body", {"content": iter([b"\0" * 65536] * 40)}, 413, "--max-body-mb"),
        ("json content type", {**good, "headers": {"content-type": "application/json"}}, 415, "content type"),
        ("text content type", {**good, "headers": {"content-type": "text/plain"}}, 415, "content type"),
        ("multipart without boundary", {**good, "headers": {"content-type": "multipart/form-data"}}, 400,
         "no boundary"),
        ("multipart without file", {"files": {"song": ("a.flac", full)}}, 400, "no field named 'file'"),
        ("garbage multipart", {"content": b"--xx\r\nnonsense", "headers": {"content-type": "multipart/form-data; boundary=yy"}},
         400, "bad multipart body"),
        ("top_k=0", {**good, "params": {"top_k": "0"}}, 400, "top_k must be an integer"),
        ("top_k=x", {**good, "params": {"top_k": "x"}}, 400, "top_k must be an integer"),
        ("threshold=2", {**good, "params": {"threshold": "2"}}, 400, "threshold must be a number"),
        ("threshold=nan", {**good, "params": {"threshold": "nan"}}, 400, "threshold must be a number"),
        ("timeline=maybe", {**good, "params": {"timeline": "maybe"}}, 400, "timeline must be true or false"),
        ("unknown parameter", {**good, "params": {"hop": "1"}}, 400, "unknown query parameter 'hop'"),
        ("bad content-length", {**good, "headers": {"content-length": "abc"}}, 400, None),
    ]


def _one_line_error(resp: httpx.Response) -> str:
    body = resp.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in resp.text, resp.text
    return body["error"]


def test_bad_requests(server, tmp_path: Path) -> None:
    cases = _bad_requests(tmp_path)
    assert len(cases) >= 15
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for what, kwargs, status, text in cases:
            try:
                resp = client.post("/v1/identify", **kwargs)
            except httpx.TransportError:  # h11 itself may refuse a malformed header before the app sees it
                assert what == "bad content-length"
                continue
            assert resp.status_code == status, (what, resp.status_code, resp.text)
            error = _one_line_error(resp)
            assert text is None or text in error, (what, error)
        assert client.get("/v1/identify").status_code == 405 and client.get("/nowhere").status_code == 404
        _one_line_error(client.get("/nowhere"))
        assert client.post("/v1/identify", content=(tmp_path / "full.flac").read_bytes()).status_code == 200
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "ast_decode_errors_total", status="415") >= 3


def test_truncated_flac_and_nan_wav_like_the_cli(server, tmp_path: Path) -> None:
    full = write_tone(tmp_path / "full.flac", 4.0).read_bytes()
    nan = np.full(20000, 0.1, np.float32)
    nan[::7] = np.nan
    buf = io.BytesIO()
    sf.write(buf, nan, 16000, format="WAV", subtype="FLOAT")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        cut = client.post("/v1/identify", content=full[: len(full) // 3])
        assert cut.status_code in (200, 422)  # scored from what decodes, or the CLI's one-line error
        if cut.status_code == 422:
            _one_line_error(cut)
        repaired = client.post("/v1/identify", content=buf.getvalue())
        assert repaired.status_code == 200 and repaired.json()["matches"]


def test_path_like_names_are_labels_never_opened(server, tmp_path: Path) -> None:
    song = write_tone(tmp_path / "s.flac", 1.5).read_bytes()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for name in ("../../etc/passwd", "/etc/passwd", "C:\\Windows\\win.ini", "..", "a\x00b\nc.flac"):
            resp = client.post("/v1/identify", files={"file": (name, song)})
            assert resp.status_code == 200, resp.text
            assert "/" not in resp.json()["path"] and "\\" not in resp.json()["path"]
            assert "\n" not in resp.json()["path"] and "\x00" not in resp.json()["path"]
        assert client.post("/v1/identify", params={"name": "/etc/shadow"}, content=song).json()["path"] == "shadow"
        notes = client.post("/v1/identify", files={"file": ("/etc/passwd", b"root:x:0:0")})
        assert notes.status_code == 415  # the bytes sent are decoded; the name is never a path to read


def _raw_request(port: int, headers: str, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(headers.encode() + b"\r\n" + body)
    return sock


def _reply(sock: socket.socket) -> str:
    """One whole HTTP response read off a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(4096)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next((ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")), 0))
    while len(body) < length and (chunk := sock.recv(4096)):
        body += chunk
    sock.close()
    return (head + b"\r\n\r\n" + body).decode()


def _head(length: int) -> str:
    return (f"POST /v1/identify HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {length}\r\n")


def test_slow_upload_gets_408_and_does_not_stall_others(fake_model: Path, tmp_path: Path) -> None:
    song = write_tone(tmp_path / "s.flac", 1.5).read_bytes()
    opts = HttpOptions(max_delay_ms=1.0, timeout_s=1.0)
    with running(fake_model, opts) as srv, httpx.Client(base_url=srv.url, timeout=10) as client:
        wait_ready(client, srv.url)
        slow = _raw_request(srv.port, _head(len(song)), song[:100])  # then nothing more
        t0 = time.monotonic()
        assert client.post("/v1/identify", content=song).status_code == 200  # served while the other trickles
        assert time.monotonic() - t0 < 0.9
        reply = _reply(slow)
        assert reply.startswith("HTTP/1.1 408") and "--timeout-s" in reply and "Traceback" not in reply


def test_disconnect_mid_upload_and_mid_work_cancel(fake_model: Path, tmp_path: Path) -> None:
    song = write_tone(tmp_path / "s.flac", 1.5).read_bytes()
    cancelled = asyncio.Event()

    def identifier(_svc):
        async def slow(name, decoded, match):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return SongResult(name)
        return slow

    with running(fake_model, HttpOptions(timeout_s=30.0), identifier=identifier) as srv, httpx.Client(base_url=srv.url) as client:
        wait_ready(client, srv.url)
        _raw_request(srv.port, _head(len(song)), song[:100]).close()  # gone mid-upload
        busy = _raw_request(srv.port, _head(len(song)), song)  # whole body, then gone while it is scored
        time.sleep(0.3)
        busy.close()
        deadline = time.monotonic() + 10
        while metric(client.get("/metrics").text, "ast_http_requests_total", status="499") < 2:
            assert time.monotonic() < deadline, client.get("/metrics").text
            time.sleep(0.05)
        assert cancelled.is_set()
        assert srv.service.in_flight == 0


def test_queue_full_503_and_deadline_504(fake_model: Path, tmp_path: Path) -> None:
    song = write_tone(tmp_path / "s.flac", 1.5).read_bytes()

    def identifier(_svc):
        async def slow(name, decoded, match):
            await asyncio.sleep(30)
        return slow

    opts = HttpOptions(max_queue=2, timeout_s=1.0)
    with running(fake_model, opts, identifier=identifier) as srv, httpx.Client(base_url=srv.url, timeout=10) as client:
        wait_ready(client, srv.url)
        held = [_raw_request(srv.port, _head(len(song)), song) for _ in range(2)]
        deadline = time.monotonic() + 5
        while srv.service.in_flight < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        full = client.post("/v1/identify", content=song)
        assert full.status_code == 503 and full.headers["retry-after"] and "--max-queue" in _one_line_error(full)
        for sock in held:
            reply = _reply(sock)
            assert reply.startswith("HTTP/1.1 504") and "deadline" in reply
