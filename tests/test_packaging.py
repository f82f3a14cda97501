"""Packaging: the base install is the torch-free runtime; every run-time import is declared where it is needed.

``test_base_install_serves_without_torch`` (marked ``install`` and ``slow``; ``.ci/run`` runs it after
``make test``) builds a fresh virtual environment with ``pip install .`` and no extras, checks that it holds no
torch, and scores songs with its ``ast-serve`` against the same model scored by the development environment.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
# What serving imports at run time: the base install must provide it.
RUNTIME_DISTRIBUTIONS = ("numpy", "onnxruntime-gpu", "soundfile", "soxr", "click", "tqdm", "faiss-cpu", "openvino", "threadpoolctl")
# What the base install must never pull in (about 5 GB with the CUDA builds).
TRAINING_STACK = ("torch", "torchaudio", "torchvision", "timm", "onnx", "onnxscript")
INSTALL_TIMEOUT_S = 1800
logger = logging.getLogger(__name__)


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower() for req in requirements}


def _project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def test_base_install_is_the_runtime_alone() -> None:
    project = _project()
    base = _names(project["dependencies"])
    assert not [n for n in RUNTIME_DISTRIBUTIONS if n not in base], base
    assert not base & set(TRAINING_STACK), f"the base install pulls in {sorted(base & set(TRAINING_STACK))}"


def test_extras_hold_the_training_and_export_stacks() -> None:
    extras = _project()["optional-dependencies"]
    assert {"torch", "torchaudio", "torchvision", "timm"} <= _names(extras["train"])
    assert {"onnx", "onnxscript", "nncf", "ast-sampleid"} <= _names(extras["export"])  # onnx, int8, [train]
    assert {"starlette", "uvicorn", "prometheus-client"} <= _names(extras["http"])
    assert not _names(extras["http"]) & set(TRAINING_STACK)


def test_safetensors_is_importable() -> None:
    """``ast-export import hf`` reads ``model.safetensors`` with it."""
    from safetensors.torch import load_file

    assert callable(load_file)


def _songs(folder: Path) -> list[Path]:
    rng = np.random.default_rng(7)
    paths = []
    for i, seconds in enumerate((1.5, 6.0, 9.5)):
        t = np.arange(int(seconds * 16000)) / 16000
        wave = 0.4 * np.sin(2 * np.pi * (220 + 110 * i) * t) + 0.05 * rng.standard_normal(t.size)
        paths.append(folder / f"song{i}.wav")
        sf.write(paths[-1], wave.astype(np.float32), 16000, subtype="FLOAT")
    return paths


def _identify(ast_serve: Path | str, model: Path, songs: list[Path]) -> list[dict]:
    cmd = [str(ast_serve), "-q", "identify", "--model", str(model), "--format", "json", "--top-k", "3",
           *map(str, songs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


@pytest.mark.slow
@pytest.mark.install
def test_base_install_serves_without_torch(tmp_path: Path) -> None:
    from tests.serving.fake_model import build_model

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt")]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([*pip, str(ROOT)], check=True, timeout=INSTALL_TIMEOUT_S, env=env)
    probe = "import importlib.util as u; print([m for m in ('torch', 'timm', 'onnx') if u.find_spec(m)])"
    found = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert found == "[]", f"the base install holds {found}"
    model = build_model(tmp_path / "model.onnx")
    songs = _songs(tmp_path)
    fresh = _identify(venv / "bin" / "ast-serve", model, songs)
    dev = _identify(Path(sys.executable).with_name("ast-serve"), model, songs)
    assert fresh == dev
    size = _folder_mb(venv)
    logger.warning("base install venv: %.0f MB", size)
    print(f"\nbase install venv: {size:.0f} MB (no torch)")
