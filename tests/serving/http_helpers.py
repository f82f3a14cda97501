"""A real uvicorn server on 127.0.0.1 with an ephemeral port, in a thread, for the ``ast-serve http`` tests."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.http.options import HttpOptions
from serving.http.server import build_server
from serving.session import ModelSession, SessionOptions

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.01


@dataclass
class Running:
    url: str
    port: int
    server: Any

    @property
    def service(self) -> Any:
        return self.server.config.app.state.service  # the app behind uvicorn's config


def session(model: Path) -> ModelSession:
    return ModelSession(model, SessionOptions(device="cpu", intra_threads=1, backend="ort", precision="fp32"))


@contextmanager
def running(model: Path, options: HttpOptions | None = None, **app_config: Any) -> Iterator[Running]:
    """Serve ``model`` until the block ends; the server stops by itself (bounded waits)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = build_server(session(model), options or HttpOptions(), **app_config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert server.started, "server did not start"
    try:
        yield Running(f"http://127.0.0.1:{port}", port, server)
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        sock.close()
        assert not thread.is_alive(), "server did not stop"


def wait_ready(client: Any, url: str, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get(f"{url}/readyz").status_code == 200:
            return
        time.sleep(POLL_S)
    raise AssertionError("server never became ready")


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` in a Prometheus exposition."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def cli_server(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, Any, list[str]]]:
    """``ast-serve http ARGS --port 0`` as a subprocess -> (url, process, stderr lines); killed if still up."""
    import os
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "serving.cli", "http", "--device", "cpu", "--port", "0", *args],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (found := [m for ln in lines if (m := LISTENING.search(ln))]):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(POLL_S)
        yield f"http://127.0.0.1:{found[0].group(1)}", proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(STOP_TIMEOUT_S)
        reader.join(STOP_TIMEOUT_S)
