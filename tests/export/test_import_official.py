"""``ast-export import ast``: a random HF AST rewritten into the YuanGongND/ast key layout, against transformers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ast_export.cli import main as export_main
from ast_export.importers import CheckpointImportError, ast_checkpoint_filter_fn, infer_official_config
from models import build_scoring_model, load_weights
from tests.export.hf_models import (
    LABELS,
    SMALL,
    build_hf_model,
    cli,
    hf_probs,
    ort_probs,
    to_official_state_dict,
    waveforms,
    write_label_csv,
)
from tests.loopback import folder_handler, loopback_server
from tests.tolerances import HF_PARITY_MAX_ABS

WINDOW = SMALL["max_length"] * 160 + 240  # samples giving exactly max_length frames


@pytest.fixture(scope="module")
def hf_model():
    return build_hf_model(SMALL, seed=1)


@pytest.fixture(scope="module")
def official_pth(hf_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("official") / "audioset_tiny.pth"
    torch.save(to_official_state_dict(hf_model), path)
    return path


@pytest.fixture(scope="module")
def labels_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_label_csv(tmp_path_factory.mktemp("labels") / "class_labels_indices.csv", LABELS)


@pytest.fixture(scope="module")
def imported(official_pth: Path, labels_csv: Path) -> Path:
    out = official_pth.with_name("modelo_audio.pth")
    # 256 frames from the pos_embed grid (stride 10 is the official default, given here for clarity).
    cli("import", "ast", str(official_pth), "--out", str(out), "--labels", str(labels_csv), "--fstride", "10",
        "--tstride", "10")
    return out


def test_config_inferred_from_shapes(imported: Path, official_pth: Path) -> None:
    wf = load_weights(imported)
    cfg = wf.model_config
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio, cfg.patch_size) == (192, 2, 3, 4.0, 16)
    assert (cfg.target_frames, cfg.grid, cfg.layer_norm_eps, cfg.qkv_bias) == (256, (12, 25), 1e-6, True)
    assert wf.labels == LABELS  # display_name column, "snare, rimshot" quoted in the CSV
    source = wf.train["imported_from"]
    assert source["format"] == "ast"
    assert source["sha256"] == hashlib.sha256(official_pth.read_bytes()).hexdigest()


def test_head_norm_matches_official_mlp_head(official_pth: Path, imported: Path) -> None:
    """Official ``mlp_head.0`` is a torch-default LayerNorm (eps 1e-5), the blocks use 1e-6: with features of
    small variance the eps dominates, so only the right one reproduces the official head."""
    wf = load_weights(imported)
    assert (wf.model_config.layer_norm_eps, wf.model_config.head_norm_eps) == (1e-6, 1e-5)
    official = torch.load(official_pth, weights_only=True)
    reference = torch.nn.LayerNorm(wf.model_config.embed_dim)  # what YuanGongND/ast builds
    reference.load_state_dict({p: official[f"module.mlp_head.0.{p}"] for p in ("weight", "bias")})
    ours = build_scoring_model(wf).ast
    assert all(block.norm1.eps == 1e-6 for block in ours.blocks) and ours.norm.eps == 1e-6
    torch.manual_seed(3)
    features = 1e-3 * torch.randn(4, wf.model_config.embed_dim)  # variance 1e-6, comparable to the eps
    with torch.no_grad():
        diff = (ours.head_norm(features) - reference(features)).abs().max().item()
    assert diff <= 1e-5


def test_onnx_probs_match_transformers(hf_model, imported: Path) -> None:
    onnx_path = imported.with_suffix(".onnx")
    cli("onnx", "--weights", str(imported), "--out", str(onnx_path), "--no-verify")
    batch = waveforms(WINDOW, seed=5)
    diff = np.abs(ort_probs(onnx_path, batch) - hf_probs(hf_model, batch, SMALL["max_length"])).max()
    print(f"HF -> official layout -> import ast -> ONNX (ORT CPU) vs transformers: probs max abs {diff:.3g}")
    assert diff <= HF_PARITY_MAX_ABS


def test_eager_matches_transformers(hf_model, imported: Path) -> None:
    batch = waveforms(WINDOW, seed=6)
    with torch.no_grad():
        ours = build_scoring_model(load_weights(imported))(torch.from_numpy(batch))[0].numpy()
    assert np.abs(ours - hf_probs(hf_model, batch, SMALL["max_length"])).max() <= HF_PARITY_MAX_ABS


def test_default_labels_are_indices_and_deit_heads_dropped(hf_model, official_pth: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.pth"
    cli("import", "ast", str(official_pth), "--out", str(out))
    wf = load_weights(out)
    assert wf.labels == [str(i) for i in range(len(LABELS))]
    assert not any(k.startswith(("head_dist", "module", "v.")) for k in wf.state_dict)


def test_filter_fn_is_pure_and_strict(hf_model) -> None:
    sd = to_official_state_dict(hf_model)
    before = dict(sd)
    mapped = ast_checkpoint_filter_fn(sd)
    assert sd.keys() == before.keys()
    assert "head_norm.weight" in mapped and "blocks.1.attn.qkv.weight" in mapped
    with pytest.raises(CheckpointImportError, match="unexpected official AST key"):
        ast_checkpoint_filter_fn({"module.decoder.weight": torch.zeros(1)})
    with pytest.raises(CheckpointImportError, match="--fstride"):
        infer_official_config(mapped, fstride=7, tstride=10)  # 17 frequency rows do not divide 300 patches


def test_target_frames_resamples_official_grid(official_pth: Path, tmp_path: Path) -> None:
    out = tmp_path / "long.pth"
    cli("import", "ast", str(official_pth), "--out", str(out), "--target-frames", "400")
    wf = load_weights(out)
    assert wf.model_config.grid == (12, 39)
    assert wf.state_dict["pos_embed"].shape == (1, 2 + 12 * 39, 192)
    probs, _ = build_scoring_model(wf)(torch.zeros(1, 399 * 160 + 400))
    assert torch.isfinite(probs).all()


def test_import_from_url_with_sha256(official_pth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with loopback_server(folder_handler(official_pth.parent)) as base:
        url = f"{base}/{official_pth.name}"
        sha = hashlib.sha256(official_pth.read_bytes()).hexdigest()
        out = tmp_path / "from-url.pth"
        cli("import", "ast", url, "--out", str(out), "--sha256", sha)
        assert load_weights(out).train["imported_from"]["url"] == url
        result = CliRunner().invoke(export_main, ["import", "ast", url, "--out", str(tmp_path / "x.pth"),
                                                  "--sha256", "e" * 64])
    assert result.exit_code == 1 and "sha256 mismatch" in result.stderr
    assert not (tmp_path / "x.pth").exists()


def test_ast_train_init_from_imported_file(imported: Path) -> None:
    """``ast-train --init-from``: new head for another label set, pos_embed resampled to the variant's grid."""
    from training.model_setup import HEAD_KEYS, init_spec

    spec = init_spec(str(imported), "tiny", ["sample_a", "sample_b"], {})
    assert spec.ast_cfg.embed_dim == 192 and spec.ast_cfg.grid == (8, 25)  # tiny's strides and frames
    assert not set(HEAD_KEYS) & set(spec.state_dict)
    assert spec.state_dict["pos_embed"].shape == (1, 2 + 8 * 25, 192)
    model = spec.build().eval()
    with torch.no_grad():
        probs, _ = model(torch.zeros(1, model.window_samples))
    assert probs.shape == (1, 2)
