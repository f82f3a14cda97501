"""What a request must satisfy before work starts: auth, query parameters, content type, body size and shape.

Every refusal is an :class:`HttpError` (status, one-line message, optional headers) that the app turns into
``{"error": "..."}``; nothing here ever lets a traceback reach a client. Bodies are read into memory while
they stream in, counted against the limit chunk by chunk, so an oversized upload is refused after at most
``limit`` bytes, and never spooled to a temporary file (Starlette's form parser would spool parts over 1 MB).
"""

from __future__ import annotations

import asyncio
import hmac
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

from serving.matches import MatchOptions

RAW_TYPES = ("application/octet-stream", "application/x-www-form-urlencoded")  # + audio/*; the 2nd is curl -d's default
MULTIPART = "multipart/form-data"
FILE_FIELD = "file"
QUERY_KEYS = ("top_k", "threshold", "timeline", "name")
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on", ""), ("0", "false", "no", "off")
MAX_TOP_K = 1000
MAX_NAME = 200
DEFAULT_NAME = "upload"
UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]")

Receive = Callable[[], Awaitable[dict[str, Any]]]


class HttpError(Exception):
    """A request refused with ``status``; ``str(err)`` is the one-line message the client gets."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


class ClientGone(Exception):
    """The client disconnected; there is nobody to answer."""


def check_auth(header: str | None, api_key: str | None) -> None:
    """Require ``Authorization: Bearer <api_key>`` when a key is configured (constant-time comparison)."""
    if api_key is None:
        return
    challenge = {"WWW-Authenticate": "Bearer"}
    scheme, _, token = (header or "").partition(" ")
    if not header or scheme.lower() != "bearer":
        raise HttpError(401, "missing API key: send 'Authorization: Bearer <key>'", challenge)
    if not hmac.compare_digest(token.strip().encode("utf-8"), api_key.encode("utf-8")):
        raise HttpError(401, "wrong API key", challenge)


def parse_query(params: Mapping[str, str]) -> tuple[MatchOptions, str | None]:
    """``top_k``, ``threshold``, ``timeline`` (as ``identify``'s flags) and ``name`` -> options and name."""
    unknown = sorted(set(params) - set(QUERY_KEYS))
    if unknown:
        raise HttpError(400, f"unknown query parameter {unknown[0]!r}; accepted: {', '.join(QUERY_KEYS)}")
    top_k = _int(params.get("top_k", "1"), "top_k", 1, MAX_TOP_K)
    threshold = None
    if params.get("threshold", "") != "":
        threshold = _float(params["threshold"], "threshold", 0.0, 1.0)
    word = params.get("timeline", "0").strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise HttpError(400, f"timeline must be true or false, got {params['timeline']!r}")
    name = params.get("name")
    return MatchOptions(top_k, threshold, word in TRUE_WORDS), name  # k is clamped where it is used


def _int(text: str, key: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise HttpError(400, f"{key} must be an integer in [{lo}, {hi}], got {text!r}") from None
    if not lo <= value <= hi:
        raise HttpError(400, f"{key} must be an integer in [{lo}, {hi}], got {value}")
    return value


def _float(text: str, key: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise HttpError(400, f"{key} must be a number in [{lo:g}, {hi:g}], got {text!r}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise HttpError(400, f"{key} must be a number in [{lo:g}, {hi:g}], got {text!r}")
    return value


def body_kind(content_type: str | None) -> str:
    """``raw`` or ``multipart``; any other declared type is a 415."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if not mime or mime in RAW_TYPES or mime.startswith("audio/"):
        return "raw"
    if mime == MULTIPART:
        return "multipart"
    raise HttpError(415, f"unsupported content type {mime!r}: send the song as the raw body (audio/* or "
                         f"application/octet-stream) or as multipart field '{FILE_FIELD}'")


def check_length(content_length: str | None, limit: int) -> None:
    """Refuse a declared body over ``limit`` before reading a byte of it."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise HttpError(400, f"bad Content-Length {content_length!r}") from None
    if declared > limit:
        raise HttpError(413, too_big(limit))


def too_big(limit: int) -> str:
    """The 413 message for a body over ``limit`` bytes."""
    return f"request body over the {limit / (1 << 20):g} MB limit (--max-body-mb)"


async def read_body(receive: Receive, limit: int, deadline: float, timeout_s: float) -> bytes:
    """Read the request body, at most ``limit`` bytes, before the loop time ``deadline``.

    Raises:
        HttpError: 413 once the body passes ``limit``; 408 when it has not all arrived by the deadline.
        ClientGone: the client disconnected mid-upload.
    """
    loop = asyncio.get_running_loop()
    body = bytearray()
    while True:
        remaining = deadline - loop.time()
        try:
            if remaining <= 0:
                raise TimeoutError
            message = await asyncio.wait_for(receive(), remaining)
        except TimeoutError:
            raise HttpError(408, f"the request body did not arrive within {timeout_s:g} s (--timeout-s)") from None
        if message["type"] == "http.disconnect":
            raise ClientGone()
        body += message.get("body", b"")
        if len(body) > limit:
            raise HttpError(413, too_big(limit))
        if not message.get("more_body", False):
            return bytes(body)


def safe_name(name: str | None) -> str:
    """The label reported as ``path``: the last component of a client-given name, printable, bounded.

    The server never opens it: it only names the result, as a path names the CLI's result.
    """
    if not name:
        return DEFAULT_NAME
    base = re.split(r"[\\/]", name)[-1]
    base = UNSAFE_NAME.sub("", base)[:MAX_NAME].strip()
    return base if base not in ("", ".", "..") else DEFAULT_NAME


def multipart_file(body: bytes, content_type: str) -> tuple[str | None, bytes]:
    """The ``file`` field of a multipart body, parsed in memory -> (client's file name, bytes)."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise HttpError(400, "bad multipart body: no boundary in Content-Type")
    parts: list[dict[str, Any]] = []
    header: dict[str, bytearray] = {}

    def begin() -> None:
        parts.append({"headers": {}, "data": bytearray()})

    def field(data: bytes, start: int, end: int) -> None:
        header.setdefault("field", bytearray()).extend(data[start:end])

    def value(data: bytes, start: int, end: int) -> None:
        header.setdefault("value", bytearray()).extend(data[start:end])

    def header_end() -> None:
        parts[-1]["headers"][bytes(header.get("field", b"")).lower()] = bytes(header.get("value", b""))
        header.clear()

    def data(chunk: bytes, start: int, end: int) -> None:
        parts[-1]["data"].extend(chunk[start:end])

    callbacks = {"on_part_begin": begin, "on_header_field": field, "on_header_value": value,
                 "on_header_end": header_end, "on_part_data": data}
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except Exception as err:  # python-multipart raises several types for malformed input
        raise HttpError(400, f"bad multipart body ({str(err).splitlines()[0] if str(err) else 'malformed'})") from None
    return _pick_file(parts)


def _pick_file(parts: list[dict[str, Any]]) -> tuple[str | None, bytes]:
    for part in parts:
        disposition = part["headers"].get(b"content-disposition", b"")
        _, params = parse_options_header(disposition)
        if params.get(b"name") == FILE_FIELD.encode():
            filename = params.get(b"filename")
            return (filename.decode("utf-8", "replace") if filename else None), bytes(part["data"])
    raise HttpError(400, f"bad multipart body: no field named '{FILE_FIELD}'")
