"""The export formats, one :class:`~ast_export.artifact.ArtifactFormat` record each.

``ast-export <format>``, ``ast-export verify``, the metadata readers, the tolerances and the runners are all
looked up here; nothing else branches on a format's name. To add a format, write a module that defines
``FORMAT = ArtifactFormat(...)`` and add its module path to :data:`FORMAT_MODULES` (README: "Adding an export
format"). :func:`register` adds one at run time (tests, plugins).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ast_export.artifact import ArtifactFormat
from ast_export.errors import ArtifactError
from ast_export.metadata import parse
from serving.contract import kind_mismatch

FORMAT_MODULES = (
    "ast_export.onnx_export",
    "ast_export.torchscript_export",
    "ast_export.pt2_export",
)

FORMATS: dict[str, ArtifactFormat] = {}


def register(fmt: ArtifactFormat) -> ArtifactFormat:
    """Add ``fmt``; a name or suffix that another format already has is refused (ValueError: a bug)."""
    taken = {suffix: other.name for other in FORMATS.values() for suffix in other.suffixes}
    clash = [s for s in fmt.suffixes if s.lower() in taken and taken[s.lower()] != fmt.name]
    if fmt.name in FORMATS or clash:
        raise ValueError(f"format {fmt.name!r} clashes with a registered one ({fmt.name if not clash else clash})")
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> ArtifactFormat:
    """The record named ``name``; ArtifactError naming the known ones otherwise."""
    if name not in FORMATS:
        raise ArtifactError(f"unknown export format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]


def format_for_path(path: str | Path) -> ArtifactFormat:
    """The format of an artifact, from its suffix."""
    suffix = Path(path).suffix.lower()
    for fmt in FORMATS.values():
        if suffix in (s.lower() for s in fmt.suffixes):
            return fmt
    known = ", ".join(s for fmt in FORMATS.values() for s in fmt.suffixes)
    wrong_kind = kind_mismatch(path, ("onnx", "torchscript", "pt2", "unknown"))
    if wrong_kind:  # a weights file or checkpoint given as the artifact: say what it is and what takes it
        raise ArtifactError(wrong_kind)
    raise ArtifactError(f"{path}: unknown artifact suffix {suffix!r}; expected one of {known}")


def artifact_format(path: str | Path) -> str:
    """Format name of an artifact from its suffix (``onnx``, ``torchscript``, ``pt2``, ...)."""
    return format_for_path(path).name


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The validated metadata of any artifact, read the way its format stores it.

    Raises:
        ArtifactError: unknown suffix, unreadable file, or metadata that ``serving.contract`` refuses.
    """
    path = Path(path)
    return parse(format_for_path(path).read_metadata(path), str(path))


for _module in FORMAT_MODULES:
    register(importlib.import_module(_module).FORMAT)
