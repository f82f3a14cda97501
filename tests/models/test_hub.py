"""models.hub: URL downloads into the cache, served from a loopback HTTP server (no internet)."""

from __future__ import annotations

import hashlib
import http.server
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.hub import HubError, cached_path, resolve_weights, url_basename
from tests.loopback import loopback_server

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, several read chunks
GOOD = "/weights/modelo_audio.pth"
DROP = "/drop/modelo_audio.pth"
MISSING = "/missing.pth"


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path == MISSING:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.path == DROP:  # promise the whole body, send half, hang up
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(PAYLOAD)

    def log_message(self, *args: object) -> None:  # keep the test output quiet
        return


@pytest.fixture()
def server() -> Iterator[tuple[str, dict[str, int]]]:
    hits: dict[str, int] = {}
    with loopback_server(type("Handler", (_Handler,), {"hits": hits})) as base:
        yield base, hits


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "ast-sampleid"


def _cache_files(cache: Path) -> list[Path]:
    return sorted(cache.iterdir()) if cache.exists() else []


def test_local_path_is_returned_as_is(tmp_path: Path, cache: Path) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(b"abc")
    assert resolve_weights(str(path)) == path
    assert resolve_weights(str(path), sha256=hashlib.sha256(b"abc").hexdigest()) == path
    with pytest.raises(HubError, match="sha256 mismatch"):
        resolve_weights(str(path), sha256="0" * 64)
    assert _cache_files(cache) == []


def test_download_then_cache_reuse(server: tuple[str, dict[str, int]], cache: Path) -> None:
    base, hits = server
    url = base + GOOD
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    first = resolve_weights(url, sha256=sha, progress=False)
    assert first == cached_path(url) and first.parent == cache
    assert first.read_bytes() == PAYLOAD
    assert first.name.endswith("-modelo_audio.pth")
    second = resolve_weights(url, sha256=sha.upper(), progress=False)
    assert second == first
    assert hits[GOOD] == 1, "the second call must come from the cache"
    assert _cache_files(cache) == [first]


def test_sha256_mismatch_is_refused(server: tuple[str, dict[str, int]], cache: Path) -> None:
    base, hits = server
    with pytest.raises(HubError, match="sha256 mismatch"):
        resolve_weights(base + GOOD, sha256="f" * 64, progress=False)
    assert hits[GOOD] == 1
    assert _cache_files(cache) == []


def test_dropped_connection_leaves_nothing(server: tuple[str, dict[str, int]], cache: Path) -> None:
    base, _ = server
    with pytest.raises(HubError) as info:
        resolve_weights(base + DROP, progress=False)
    message = str(info.value)
    assert "interrupted" in message and "\n" not in message
    assert f"{len(PAYLOAD) // 2} of {len(PAYLOAD)} bytes" in message
    assert _cache_files(cache) == []


def test_http_error_is_one_line(server: tuple[str, dict[str, int]], cache: Path) -> None:
    base, _ = server
    with pytest.raises(HubError, match="HTTP 404"):
        resolve_weights(base + MISSING, progress=False)
    assert _cache_files(cache) == []


def test_bad_sha256_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="64 hex digits"):
        resolve_weights(str(tmp_path / "w.pth"), sha256="xyz")


def test_url_basename_is_safe() -> None:
    assert url_basename("https://host/a/b/modelo%20audio.pth?x=1") == "modelo_audio.pth"
    assert url_basename("https://host/") == "weights.pth"
