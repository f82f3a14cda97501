"""Packaging: what the packages import at run time is a main dependency, not a test extra."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# Third-party modules the installed packages import at run time (beyond the obvious torch/numpy stack).
RUNTIME_DISTRIBUTIONS = ("safetensors", "tqdm", "soxr", "soundfile", "onnxruntime-gpu")


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower() for req in requirements}


def test_runtime_imports_are_main_dependencies() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    main = _names(project["dependencies"])
    missing = [name for name in RUNTIME_DISTRIBUTIONS if name not in main]
    assert not missing, f"run-time imports missing from [project.dependencies]: {missing}"


def test_safetensors_is_importable() -> None:
    """``ast-export import hf`` reads ``model.safetensors`` with it."""
    from safetensors.torch import load_file

    assert callable(load_file)
