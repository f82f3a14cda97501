"""Fixtures for export tests: a random tiny model saved as a weights file, and its fp32 ONNX graph.

Everything is session-scoped: exporting costs seconds, and the tests only read the artifacts.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from ast_export.onnx_export import export_fp32_model, write_onnx
from ast_export.source import Source, load_source
from ast_export.spec import DEFAULT_OPSET
from models import AST, AUDIOSET_MEAN, AUDIOSET_STD, FbankConfig, WeightsFile, get_config, save_weights

LABELS = ["rec_a", "rec_b", "rec_c", "rec_d", "rec_e"]
TINY_DEPTH = 2
SEED = 0


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the CPU is shared with other suites


@pytest.fixture(autouse=True)
def _hermetic_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty folder so verify never picks up data/demo from the checkout."""
    monkeypatch.chdir(tmp_path)


def random_weights(path: Path, **overrides: object) -> Path:
    """A random ``tiny`` (depth ``TINY_DEPTH``) weights file at ``path``; ``overrides`` go to the ASTConfig."""
    torch.manual_seed(SEED)
    cfg = get_config("tiny", depth=TINY_DEPTH, num_classes=len(LABELS), **overrides)
    wf = WeightsFile(format="ast-sampleid/1", model_config=cfg, fbank_config=FbankConfig(), labels=LABELS,
                     norm_mean=AUDIOSET_MEAN, norm_std=AUDIOSET_STD, state_dict=AST(cfg).state_dict(), train={})
    save_weights(path, wf)
    return path


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Token pooling: a *random* encoder's patch-token averages barely differ between inputs, so int8 noise
    # flips top-1 on a few percent of windows and the variant agreement bar would judge the fixture, not the
    # exporter. The average pool (tiny's default) is exported and checked in test_onnx.py.
    return random_weights(tmp_path_factory.mktemp("weights") / "modelo_audio.pth", global_pool="token")


@pytest.fixture(scope="session")
def source(weights: Path) -> Source:
    return load_source(weights)


@pytest.fixture(scope="session")
def fp32_graph(source: Source) -> onnx.ModelProto:
    model, exporter = export_fp32_model(source, DEFAULT_OPSET)
    assert exporter == "dynamo", "the dynamo exporter must work here (legacy is only a fallback)"
    return model


@pytest.fixture(scope="session")
def onnx_path(fp32_graph: onnx.ModelProto, source: Source, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "modelo_audio.onnx"
    write_onnx(onnx.ModelProto.FromString(fp32_graph.SerializeToString()), source, out)
    return out
