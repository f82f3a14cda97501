"""What every ``ast-export`` command shares: the ``--weights``/``--sha256`` options and the one-line error rule.

Only the project's typed errors are expected failures (one stderr line, exit 1). A bare ``ValueError``,
``OSError`` or ``RuntimeError`` is a bug and keeps its traceback: where the user can cause one (an unwritable
``--out``, an unreadable audio file), it is converted at its source into one of the typed errors below, with a
message that says what to do.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ast_export.errors import ArtifactError, CheckpointImportError, ExportError, ParityError, VerifyInputError
from models.hub import HubError, is_url, sha256_option_callback
from models.weights import WeightsError
from serving.contract import AudioError, ModelError, describe_file, one_line

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ExportError, ParityError, ArtifactError, VerifyInputError, CheckpointImportError, WeightsError, HubError,
    ModelError, AudioError,
)
FAILURE_EXIT = 1


def one_line_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :data:`EXPECTED_ERRORS` into ``error: <one line>`` on stderr and exit code 1 (no traceback)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EXPECTED_ERRORS as err:
            click.echo(f"error: {one_line(err)}", err=True)
            raise SystemExit(FAILURE_EXIT) from None
    return wrapper


class WeightsParam(click.ParamType):
    """``--weights``: an ``http(s)://`` URL as given, or a local file that must exist (else a usage error)."""

    name = "PATH|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = os.fspath(value)
        if is_url(text):
            return text
        path = Path(text).expanduser()
        if path.is_dir():
            self.fail(describe_file(path), param, ctx)
        if not path.is_file():
            self.fail(f"{text}: no such file", param, ctx)
        return str(path)


def _weights_kwargs(help_text: str) -> dict[str, Any]:
    return {"required": True, "type": WeightsParam(), "help": f"{help_text} Path or http(s) URL."}


def _sha256_kwargs(what: str) -> dict[str, Any]:
    return {"callback": sha256_option_callback, "help": f"Expected SHA-256 of {what} (URL download or local file)."}


def weights_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--weights PATH|URL`` (required), as a decorator."""
    return click.option("--weights", **_weights_kwargs(help_text))


def sha256_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--sha256`` as every command that reads weights spells it (checked by ``models.hub.resolve_weights``)."""
    return click.option("--sha256", **_sha256_kwargs(what))


def weights_params(help_text: str) -> list[click.Option]:
    """``--weights`` and ``--sha256`` of the weights file, as parameters for a generated command."""
    return [click.Option(["--weights"], **_weights_kwargs(help_text)),
            click.Option(["--sha256"], **_sha256_kwargs("the weights file"))]
