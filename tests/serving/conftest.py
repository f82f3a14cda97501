"""Fixtures for serving tests: a fake model and generated audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.serving.fake_model import SAMPLE_RATE, build_model


@pytest.fixture(scope="session")
def fake_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("model") / "fake.onnx")


def write_tone(path: Path, seconds: float = 3.0, rate: int = SAMPLE_RATE, channels: int = 1,
               subtype: str | None = None, fmt: str | None = None, amplitude: float = 0.5) -> Path:
    """A sine tone (with a little noise) written with soundfile."""
    n = max(1, int(round(seconds * rate)))
    t = np.arange(n) / rate
    rng = np.random.default_rng(n)
    mono = amplitude * np.sin(2 * np.pi * 440.0 * t) + 0.01 * rng.standard_normal(n)
    data = np.repeat(mono[:, None], channels, axis=1).astype(np.float32)
    sf.write(str(path) if isinstance(path, Path) else path, data, rate, subtype=subtype, format=fmt)
    return path


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    return write_tone(tmp_path / "tone.flac")
