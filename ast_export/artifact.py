"""The format record: everything that differs between export formats, as data (one record per format).

A format module (``onnx_export``, ``torchscript_export``, ``pt2_export``) defines one :class:`ArtifactFormat`
named ``FORMAT``; ``registry`` lists the modules. The shared path (``pipeline``) builds the artifact, embeds the
metadata, saves it atomically and verifies it, the same way for every format; ``ast-export <name>`` and
``ast-export verify`` are generated from the records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ast_export.errors import ArtifactError
from ast_export.options import ExportOptions
from ast_export.runners import Runner
from ast_export.source import Source
from ast_export.spec import FP32, Tolerance
from serving.contract import METADATA_KEY, one_line


@dataclass
class Built:
    """What a format's ``build`` made, before metadata and saving.

    Attributes:
        artifact: the in-memory artifact (an ONNX ModelProto, a traced module, ...), as ``save`` expects it.
        metadata: format-specific metadata keys (e.g. ``opset``, ``transform``), merged into the document.
        notes: for the log and the :class:`~ast_export.source.ExportResult` (e.g. which exporter ran).
    """

    artifact: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


Builder = Callable[[Source, ExportOptions], Built]
MetadataWriter = Callable[[Any, str], None]  # (artifact, metadata JSON text) -> embeds it in the artifact
Saver = Callable[[Any, Path], None]  # (artifact, path) -> writes one file (atomically)
MetadataReader = Callable[[Path], "str | None"]  # path -> metadata JSON text, None if absent; ArtifactError
RunnerFactory = Callable[[Path, int], "tuple[list[Runner], list[str]]"]  # (path, threads) -> runners, skips


@dataclass(frozen=True)
class ArtifactFormat:
    """One export format.

    Attributes:
        name: the ``ast-export`` subcommand and the metadata's ``format``.
        suffixes: file suffixes it is recognised by; the first is the default output's.
        summary: the command's help text.
        build: makes the artifact from a loaded weights file (the writer's first half).
        write_metadata: embeds the metadata text under ``serving.contract.METADATA_KEY``.
        save: writes the artifact to a path (the writer's second half); OSError means "cannot write there".
        read_metadata: the metadata text of a file on disk, without running it.
        runners: ways to run a file on disk (``threads`` for runtimes that take it); load failures raise
            ArtifactError.
        tolerances: the bar per precision; its keys are the precisions this format exports.
        optimized_tolerance: the bar of ``--optimize`` (fp32 only); None when the format has no optimised form.
        options: the format's own click options; their values reach ``build`` as ``ExportOptions.settings``.
    """

    name: str
    suffixes: tuple[str, ...]
    summary: str
    build: Builder
    write_metadata: MetadataWriter
    save: Saver
    read_metadata: MetadataReader
    runners: RunnerFactory
    tolerances: Mapping[str, Tolerance]
    optimized_tolerance: Tolerance | None = None
    options: tuple[click.Option, ...] = ()

    @property
    def suffix(self) -> str:
        """The default output suffix (e.g. ``.onnx``)."""
        return self.suffixes[0]

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions this format exports."""
        return tuple(self.tolerances)

    @property
    def can_optimize(self) -> bool:
        return self.optimized_tolerance is not None

    def tolerance(self, precision: str, optimized: bool = False) -> Tolerance:
        """The bar of an artifact of this format; ArtifactError when the format does not declare it."""
        if optimized and precision == FP32 and self.optimized_tolerance is not None:
            return self.optimized_tolerance
        if optimized or precision not in self.tolerances:
            what = f"{precision}{' optimized' if optimized else ''}"
            raise ArtifactError(f"no tolerance declared for {self.name} {what}; this version exports "
                                f"{', '.join(self.precisions)}{' and fp32 optimized' if self.can_optimize else ''}")
        return self.tolerances[precision]


@dataclass
class ExtraFilesArtifact:
    """An in-memory artifact whose metadata travels as a named extra file (TorchScript, ``.pt2``).

    Attributes:
        program: what the format's save function writes (a traced module, an ExportedProgram).
        extra_files: name -> text, saved inside the file.
    """

    program: Any
    extra_files: dict[str, str] = field(default_factory=dict)


def write_extra_file_metadata(artifact: ExtraFilesArtifact, text: str) -> None:
    """The metadata writer of extra-file formats: ``text`` under ``serving.contract.METADATA_KEY``."""
    artifact.extra_files[METADATA_KEY] = text


def read_extra_file_metadata(path: Path, load: Callable[[str, dict[str, str]], Any], kind: str) -> str | None:
    """The metadata text of an extra-file format: ``load(path, extra)`` fills ``extra`` (TorchScript, ``.pt2``)."""
    extra = {METADATA_KEY: ""}
    try:
        load(str(path), extra)
    except Exception as err:  # torch raises RuntimeError / ValueError / zip errors of several kinds
        raise ArtifactError(f"{path}: not a readable {kind} file ({one_line(err)})") from err
    return extra[METADATA_KEY] or None


def single_runner(path: Path, make: Callable[[Path], Runner], kind: str) -> tuple[list[Runner], list[str]]:
    """The one runner of a torch format (its threads are torch's global setting, left alone)."""
    try:
        return [make(path)], []
    except Exception as err:  # torch raises RuntimeError / zip / pickle errors
        raise ArtifactError(f"{path}: cannot load it as {kind} ({one_line(err)})") from err
