"""Typed errors of the exporter; the CLI turns each into a one-line message and an exit code."""

from __future__ import annotations


class ExportError(RuntimeError):
    """An artifact could not be written, or it breaks the contract (e.g. a DFT node in the ONNX graph)."""


class ParityError(RuntimeError):
    """The artifact does not compute what the eager model computes, within the spec's tolerances."""


class ArtifactError(ValueError):
    """A file given to ``ast-export verify`` is not a readable ast-sampleid artifact."""
