"""Typed errors of the exporter; the CLI turns each into a one-line message and exit code 1.

Only these (and the typed errors of ``models`` and ``serving.contract``, see ``ast_export.cli_common``) are
"expected": anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ExportError(RuntimeError):
    """An artifact could not be written, or it breaks the contract (e.g. a DFT node in the ONNX graph)."""


class ParityError(RuntimeError):
    """The artifact does not compute what the eager model computes, within the spec's tolerances."""


class ArtifactError(ValueError):
    """A file given to ``ast-export verify`` is not a readable ast-sampleid artifact."""


class VerifyInputError(ValueError):
    """Verification has nothing to compare on (e.g. none of the ``--audio`` files decodes)."""


class CheckpointImportError(ValueError):
    """A checkpoint cannot be converted (unknown layout, missing tensors, inconsistent options)."""
