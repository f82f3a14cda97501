"""ast-serve http as a process: a bad model exits 2 before the port opens; SIGTERM drains and exits 0."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.serving.conftest import write_tone
from tests.serving.http_helpers import cli_server, metric, wait_ready

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
IN_FLIGHT = 8
LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def _serve(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "serving.cli", "http", "--device", "cpu", "--threads", "1",
                             *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_bad_model_is_one_line_and_exit_2_before_the_port_opens(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    port = _free_port()
    proc = _serve("--model", str(bad), "--port", str(port), "--backend", "ort")  # OpenVINO's loader adds native lines
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: cannot load model"), err
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # never listened


def _refused(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.02)
    return False


async def _post_all(url: str, body: bytes) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        answers = await asyncio.gather(*(client.post("/v1/identify", content=body) for _ in range(IN_FLIGHT)))
    return [a.status_code for a in answers]


def test_sigterm_drains_in_flight_requests_and_exits_0(fake_model: Path, tmp_path: Path) -> None:
    song = write_tone(tmp_path / "s.flac", 2.0).read_bytes()
    proc = _serve("--model", str(fake_model), "--port", "0", "--max-batch", "1024", "--max-delay-ms", "3000")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (found := [m for ln in lines if (m := LISTENING.search(ln))]) and time.monotonic() < deadline:
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.05)
        port = int(found[0].group(1))
        url = f"http://127.0.0.1:{port}"
        while httpx.get(f"{url}/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        results: list[int] = []
        poster = threading.Thread(target=lambda: results.extend(asyncio.run(_post_all(url, song))))
        poster.start()
        while metric(httpx.get(f"{url}/metrics").text, "ast_batch_queue_windows") < IN_FLIGHT * 3:
            assert time.monotonic() < deadline  # wait until every request waits in the batcher
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert _refused(port, deadline)  # stops accepting at once, while the batch it holds is still waiting
        assert poster.is_alive()
        poster.join(60)
        assert results == [200] * IN_FLIGHT
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    reader.join(10)
    assert not any("Traceback" in ln for ln in lines), "".join(lines)


def test_uploads_leave_no_temporary_files(fake_model: Path, tmp_path: Path) -> None:
    """Multipart parts over 1 MB are where a form parser would spool to disk; ours stays in memory."""
    song = write_tone(tmp_path / "long.wav", 40.0).read_bytes()  # 1.3 MB
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"TMPDIR": str(temp), "TEMP": str(temp), "TMP": str(temp)}
    with cli_server("--model", str(fake_model), "--backend", "ort", "--max-audio-s", "60", env=env) as (url, _, lines), \
            httpx.Client(base_url=url, timeout=60) as client:
        wait_ready(client, url)
        before = sorted(temp.iterdir())  # start-up may leave its own (openvino-telemetry writes .ses at import)
        assert client.post("/v1/identify", files={"file": ("long.wav", song)}).status_code == 200, "".join(lines)
        assert client.post("/v1/identify", content=song).status_code == 200
        assert sorted(temp.iterdir()) == before
