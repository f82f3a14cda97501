"""The typed errors of ``ast-train`` that are not tied to one module, and their one-line form.

Every error a user can cause (a bad manifest, option, config file, checkpoint, ``--init-from`` or ``--out``)
has a type; ``training.cli`` catches exactly those types at its edge, prints one line and exits with code 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from serving.contract import one_line


class ConfigError(ValueError):
    """An option, a config file or a combination of them cannot be used (``--resume`` changing a fixed field,
    ``--device cuda`` without CUDA, an unknown config key, ...); ``str(err)`` is one actionable line."""


def error_line(exc: BaseException) -> str:
    """One line for the user: the error's ``summary`` when it has one (a list of problems), else its first line."""
    summary = getattr(exc, "summary", None)
    return summary if isinstance(summary, str) and summary else one_line(exc)
