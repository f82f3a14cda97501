"""TorchScript and .pt2 artifacts: metadata inside the file, dynamic batch, parity with eager."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ast_export.options import ExportOptions, VerifyOptions
from ast_export.pt2_export import pt2_runner
from ast_export.registry import get_format, read_metadata
from ast_export.runners import eager_runner
from ast_export.signals import edge_windows
from ast_export.source import Source
from ast_export.torchscript_export import torchscript_runner
from ast_export.verify import verify_artifact
from ast_export.writer import export_artifact
from tests.export.conftest import LABELS
from tests.tolerances import ORT_EMBED_MAX_ABS, TS_PROBS_MAX_ABS

FORMATS = {"torchscript": (torchscript_runner, ".ts"), "pt2": (pt2_runner, ".pt2")}


@pytest.fixture(scope="module", params=sorted(FORMATS))
def artifact(request: pytest.FixtureRequest, source: Source, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[str, Path]:
    _, suffix = FORMATS[request.param]
    out = tmp_path_factory.mktemp(request.param) / f"modelo_audio{suffix}"
    result = export_artifact(get_format(request.param), source, out, ExportOptions())
    assert result.size_bytes > 0 and result.path.exists()
    return request.param, result.path


def test_metadata_inside(artifact: tuple[str, Path], source: Source) -> None:
    fmt, path = artifact
    meta = read_metadata(path)
    assert meta["format"] == fmt and meta["labels"] == LABELS
    assert meta["window_samples"] == source.spec.window_samples and meta["sample_rate"] == 16000


def test_parity_batches(artifact: tuple[str, Path], source: Source) -> None:
    fmt, path = artifact
    runner, eager = FORMATS[fmt][0](path), eager_runner(source.model)
    edges, _ = edge_windows(source.spec.window_samples, 16000)
    rng = np.random.default_rng(0)
    x = np.concatenate([edges, rng.uniform(-0.5, 0.5, (5, source.spec.window_samples))]).astype(np.float32)
    for batch in (1, 3, 8):
        got, ref = runner(x[:batch]), eager(x[:batch])
        assert got["probs"].shape == (batch, len(LABELS))
        assert np.abs(got["probs"] - ref["probs"]).max() <= TS_PROBS_MAX_ABS
        assert np.abs(got["embedding"] - ref["embedding"]).max() <= ORT_EMBED_MAX_ABS


def test_verify_passes(artifact: tuple[str, Path], source: Source) -> None:
    report = verify_artifact(artifact[1], source, VerifyOptions(threads=1))
    assert report.passed, [c for c in report.checks if not c.passed]
    names = [c.name for c in report.checks]
    assert names.index("output names") < names.index("shapes") < names.index("values")
