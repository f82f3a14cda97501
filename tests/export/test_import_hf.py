"""``ast-export import hf``: a random transformers AST -> our weights -> ONNX, against transformers itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from ast_export.cli import main as export_main
from ast_export.importers import CheckpointImportError, hf_checkpoint_filter_fn, hf_config_to_ast, import_hf
from models import build_scoring_model, load_weights
from tests.export.hf_models import (
    BASE,
    LABELS,
    SAMPLE_RATE,
    SMALL,
    build_hf_model,
    cli,
    hf_probs,
    ort_probs,
    save_hf,
    waveforms,
    write_preprocessor,
)
from tests.tolerances import HF_PARITY_MAX_ABS


@pytest.fixture(scope="module")
def hf_model():
    return build_hf_model(SMALL)


@pytest.fixture(scope="module")
def hf_dir(hf_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_hf(hf_model, tmp_path_factory.mktemp("hf") / "ast-hf")


@pytest.fixture(scope="module")
def imported(hf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "modelo_audio.pth"
    assert cli("import", "hf", str(hf_dir), "--out", str(out)).strip() == str(out)
    return out


@pytest.fixture(scope="module")
def onnx_file(imported: Path) -> Path:
    out = imported.with_suffix(".onnx")
    cli("onnx", "--weights", str(imported), "--out", str(out), "--no-verify")
    return out


def _eager_probs(weights: Path, batch: np.ndarray) -> np.ndarray:
    model = build_scoring_model(load_weights(weights))
    with torch.no_grad():
        probs, _ = model(torch.from_numpy(batch))
    return probs.numpy()


def test_weights_file_keeps_config_labels_eps_and_norm(imported: Path) -> None:
    wf = load_weights(imported)
    cfg = wf.model_config
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio) == (192, 2, 3, 4.0)
    assert (cfg.fstride, cfg.tstride, cfg.target_frames, cfg.num_classes) == (10, 10, 256, len(LABELS))
    assert cfg.layer_norm_eps == 1e-12 and cfg.dist_token
    assert cfg.head_norm_eps is None and cfg.head_eps == 1e-12  # HF's classifier LayerNorm shares the eps
    assert wf.labels == LABELS
    assert (wf.norm_mean, wf.norm_std) == pytest.approx((-4.2677393, 4.5689974))
    source = wf.train["imported_from"]
    assert source["format"] == "hf" and len(source["sha256"]) == 64


def test_onnx_probs_match_transformers(hf_model, onnx_file: Path) -> None:
    batch = waveforms(SMALL["max_length"] * 160 + 240)  # exactly max_length frames
    diff = np.abs(ort_probs(onnx_file, batch) - hf_probs(hf_model, batch, SMALL["max_length"])).max()
    print(f"HF -> import hf -> ONNX (ORT CPU) vs transformers: probs max abs {diff:.3g}")
    assert diff <= HF_PARITY_MAX_ABS


@pytest.mark.parametrize("seconds", [1.3, 4.0], ids=["short-padded", "long-cropped"])
def test_eager_matches_transformers_padding_and_crop(hf_model, imported: Path, seconds: float) -> None:
    """Both pad the raw fbank with zeros (then normalise) or crop it: same result on other lengths."""
    batch = waveforms(int(seconds * SAMPLE_RATE))
    diff = np.abs(_eager_probs(imported, batch) - hf_probs(hf_model, batch, SMALL["max_length"])).max()
    assert diff <= HF_PARITY_MAX_ABS


def test_waveform_dc_offset_does_not_matter(hf_model, imported: Path) -> None:
    """Our graph removes the waveform mean, transformers does not; Kaldi's per-frame DC removal makes the
    difference vanish anyway (a constant offset is part of every frame's mean)."""
    batch = waveforms(SMALL["max_length"] * 160 + 240) + np.float32(0.25)
    diff = np.abs(_eager_probs(imported, batch) - hf_probs(hf_model, batch, SMALL["max_length"])).max()
    assert diff <= HF_PARITY_MAX_ABS


def test_in_memory_transformers5_names_map_like_disk_names(hf_model, hf_dir: Path) -> None:
    from safetensors.torch import load_file

    cfg = hf_config_to_ast(json.loads((hf_dir / "config.json").read_text()), len(LABELS))
    from_disk = hf_checkpoint_filter_fn(load_file(str(hf_dir / "model.safetensors")), cfg)
    from_memory = hf_checkpoint_filter_fn(hf_model.state_dict(), cfg)
    assert from_disk.keys() == from_memory.keys()
    assert all(torch.equal(from_disk[k], from_memory[k]) for k in from_disk)


def test_preprocessor_stats_are_used(hf_model, hf_dir: Path, tmp_path: Path) -> None:
    folder = save_hf(hf_model, tmp_path / "with-pre")
    write_preprocessor(folder, mean=-3.5, std=3.0, max_length=SMALL["max_length"])
    wf = import_hf(folder)
    assert (wf.norm_mean, wf.norm_std) == (-3.5, 3.0)
    model = build_scoring_model(wf)
    batch = waveforms(SMALL["max_length"] * 160 + 240)
    with torch.no_grad():
        ours = model(torch.from_numpy(batch))[0].numpy()
    assert np.abs(ours - hf_probs(hf_model, batch, SMALL["max_length"], -3.5, 3.0)).max() <= HF_PARITY_MAX_ABS


def test_target_frames_resamples_pos_embed(hf_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "short.pth"
    cli("import", "hf", str(hf_dir), "--out", str(out), "--target-frames", "128")
    wf = load_weights(out)
    assert wf.model_config.target_frames == 128 and wf.model_config.grid == (12, 12)
    assert wf.state_dict["pos_embed"].shape == (1, 2 + 12 * 12, 192)
    probs, _ = build_scoring_model(wf)(torch.zeros(1, 127 * 160 + 400))
    assert torch.isfinite(probs).all()


def test_unknown_keys_and_bad_folders_are_one_line_errors(hf_dir: Path, tmp_path: Path) -> None:
    cfg = hf_config_to_ast(json.loads((hf_dir / "config.json").read_text()), len(LABELS))
    with pytest.raises(CheckpointImportError, match="unexpected"):
        hf_checkpoint_filter_fn({"encoder.layer.0.crossattention.weight": torch.zeros(1)}, cfg)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"hidden_size": 8}))
    result = CliRunner().invoke(export_main, ["import", "hf", str(tmp_path / "empty"), "--out", "x.pth"])
    assert result.exit_code == 1 and "no model.safetensors" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = CliRunner().invoke(export_main, ["import", "hf", str(hf_dir), "--out", "x.pth", "--sha256", "0" * 64])
    assert result.exit_code == 1 and "sha256 mismatch" in result.stderr


def test_ast_serve_identify_shows_label_names(onnx_file: Path, tmp_path: Path) -> None:
    from serving.cli import main as serve_main

    wav = tmp_path / "song.wav"
    sf.write(str(wav), waveforms(5 * SAMPLE_RATE)[0], SAMPLE_RATE)
    result = CliRunner().invoke(serve_main, ["identify", str(wav), "--model", str(onnx_file), "--top-k", "3",
                                             "--format", "json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    [song] = json.loads(result.stdout)
    assert song["error"] is None and len(song["matches"]) == 3
    assert {m["sample"] for m in song["matches"]} <= set(LABELS)


@pytest.mark.slow
def test_base_size_onnx_matches_transformers(tmp_path: Path) -> None:
    model = build_hf_model(BASE, seed=3)
    folder = save_hf(model, tmp_path / "base")
    weights, onnx_path = tmp_path / "base.pth", tmp_path / "base.onnx"
    cli("import", "hf", str(folder), "--out", str(weights))
    cli("onnx", "--weights", str(weights), "--out", str(onnx_path), "--no-verify")
    batch = waveforms(BASE["max_length"] * 160 + 240)
    diff = np.abs(ort_probs(onnx_path, batch) - hf_probs(model, batch, BASE["max_length"])).max()
    print(f"base: HF -> import hf -> ONNX (ORT CPU) vs transformers: probs max abs {diff:.3g}")
    assert diff <= HF_PARITY_MAX_ABS
