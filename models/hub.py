"""Weights from a path or an ``http(s)://`` URL, downloaded once into a local cache.

``resolve_weights`` is what every entry point calls before reading weights (``ast-export import``,
``ast-export ... --weights``, ``ast-train --init-from``)::

    resolve_weights("runs/demo/modelo_audio.pth")          # a local path: returned as is
    resolve_weights("https://host/ast.pth", sha256="ab..")  # downloaded once, then read from the cache

Decisions:

* The cache is ``$XDG_CACHE_HOME/ast-sampleid`` (default ``~/.cache/ast-sampleid``). A cached file is named
  ``<first 16 hex of sha256(url)>-<basename>``: the same basename from two hosts never collides, and the
  name still tells a human what it is.
* Downloads go to a ``.part`` file in the cache folder and are renamed into place only when complete and,
  when ``sha256`` is given, verified. A dropped connection, a short body (fewer bytes than
  ``Content-Length``), a timeout or a hash mismatch raise :class:`HubError` and leave nothing behind, so a
  later call never mistakes a half file for a good one.
* A cached file that fails the requested ``sha256`` is downloaded again (the hash may have been given only
  now); a fresh download that fails it is refused.
* Only the standard library (``urllib``) is used; the progress bar is tqdm on stderr.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

from tqdm import tqdm

from serving.contract import show_progress

logger = logging.getLogger(__name__)

CACHE_SUBDIR = "ast-sampleid"
URL_SCHEMES = ("http://", "https://")
CHUNK_BYTES = 1 << 16
HASH_CHUNK_BYTES = 1 << 20
URL_KEY_CHARS = 16  # hex digits of sha256(url) in the cached file name
DEFAULT_TIMEOUT_S = 30.0  # per socket operation, not for the whole download
DEFAULT_BASENAME = "weights.pth"
USER_AGENT = "ast-sampleid"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class HubError(OSError):
    """A URL could not be downloaded completely, or its bytes did not match the expected SHA-256."""


def is_url(path_or_url: str | os.PathLike) -> bool:
    """True for ``http://`` and ``https://`` strings."""
    return str(path_or_url).lower().startswith(URL_SCHEMES)


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ast-sampleid``, or ``~/.cache/ast-sampleid`` when the variable is unset or empty."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / CACHE_SUBDIR


def url_basename(url: str) -> str:
    """The file name that ends ``url``'s path, made safe for any file system (``weights.pth`` when empty)."""
    basename = urllib.parse.unquote(urllib.parse.urlparse(url).path).rsplit("/", 1)[-1]
    return SAFE_NAME.sub("_", basename).strip("._") or DEFAULT_BASENAME


def cached_path(url: str) -> Path:
    """Where ``url`` is (or will be) cached."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:URL_KEY_CHARS]
    return cache_dir() / f"{key}-{url_basename(url)}"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_weights(
    path_or_url: str | os.PathLike,
    sha256: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: bool = True,
) -> Path:
    """A local path to the weights named by ``path_or_url``.

    Args:
        path_or_url: a local path (returned as is) or an ``http(s)://`` URL (downloaded into the cache once,
            then reused without network).
        sha256: expected hex SHA-256 of the file. Checked for URLs and for local files that exist.
        timeout: seconds a single socket operation may wait (connect, each read).
        progress: show a tqdm progress bar on stderr while downloading.

    Returns:
        The local path.

    Raises:
        HubError: download failed or was cut short, or the bytes do not match ``sha256``.
    """
    expected = normalise_sha256(sha256)
    if not is_url(path_or_url):
        path = Path(path_or_url).expanduser()
        if expected and path.is_file():
            _check_sha256(file_sha256(path), expected, str(path))
        return path
    url = str(path_or_url)
    target = cached_path(url)
    if target.is_file():
        if not expected or file_sha256(target) == expected:
            logger.info("using cached %s", target)
            return target
        logger.warning("cached %s does not match the requested sha256; downloading again", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _download(url, target, expected, timeout, progress)
    return target


def normalise_sha256(sha256: str | None) -> str | None:
    """Lower-case 64-hex-digit hash, or None when not given. Raises ValueError for anything else."""
    if sha256 is None or not sha256.strip():
        return None
    value = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"--sha256 must be 64 hex digits; got {sha256!r}")
    return value


def sha256_option_callback(ctx: Any, param: Any, value: str | None) -> str | None:
    """click callback for a ``--sha256``-style option: a malformed hash is a usage error (exit 2)."""
    import click

    try:
        return normalise_sha256(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("--sha256 "), ctx, param) from None


def _check_sha256(actual: str, expected: str, what: str) -> None:
    if actual != expected:
        raise HubError(f"sha256 mismatch for {what}: expected {expected}, got {actual}; file refused")


def _download(url: str, target: Path, expected: str | None, timeout: float, progress: bool) -> None:
    """Stream ``url`` into a ``.part`` file beside ``target``; rename only after all checks pass."""
    fd, part_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    part = Path(part_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            actual = _fetch(url, handle, timeout, progress, target.name)
            handle.flush()
            os.fsync(handle.fileno())
        if expected:
            _check_sha256(actual, expected, url)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    logger.info("downloaded %s -> %s", url, target)


def _fetch(url: str, handle: BinaryIO, timeout: float, progress: bool, name: str) -> str:
    """Write the body of ``url`` to ``handle``; return its hex SHA-256. Raises HubError on any failure."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    received, length = 0, None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            header = response.headers.get("Content-Length")
            length = int(header) if header and header.isdigit() else None
            digest = hashlib.sha256()
            with tqdm(total=length, unit="B", unit_scale=True, unit_divisor=1024, desc=name, file=sys.stderr,
                      disable=not (progress and show_progress(logger)), leave=False) as bar:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    handle.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise HubError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise HubError(f"cannot download {url}: {exc.reason}") from exc
    except (http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        raise HubError(f"download of {url} interrupted after {_progress(received, length)} "
                       f"({type(exc).__name__}); nothing was cached, try again") from exc
    if length is not None and received != length:
        raise HubError(f"download of {url} interrupted: got {_progress(received, length)}; "
                       "nothing was cached, try again")
    return digest.hexdigest()


def _progress(received: int, length: int | None) -> str:
    return f"{received} of {length} bytes" if length is not None else f"{received} bytes"
