"""Training loop: schedule, sharding, song-level scoring, end-to-end run, --init-from."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import WeightsFile, build_scoring_model, get_config, load_weights, save_weights
from models.config import FbankConfig
from tests.training.train_helpers import TINY_MODEL, tiny_config, tiny_request, write_manifest
from training.config import TrainConfig
from training.data.augment import AugmentConfig
from training.data.dataset import BACKGROUND
from training.distributed import DistInfo, shard_indices
from training.loop import SpecAugment, cosine_lambda, window_loss
from training.metrics import SongSet, count_hits, score_songs
from training.model_setup import HEAD_KEYS, init_spec
from training.train import run


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def trained(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    return out, run(tiny_request(manifest, out))


def test_cosine_schedule_warms_up_then_decays_to_floor() -> None:
    f = cosine_lambda(total_steps=100, warmup_steps=10, floor=0.05)
    warm = [f(s) for s in range(10)]
    assert warm == sorted(warm) and warm[-1] == pytest.approx(1.0)
    decay = [f(s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))
    assert f(100) == pytest.approx(0.05)


def test_shards_are_disjoint_equal_and_cover_everything() -> None:
    shards = [shard_indices(21, DistInfo(rank=r, world_size=2), seed=3, epoch=1) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 11
    assert set(shards[0]) | set(shards[1]) == set(range(21))
    assert len(set(shards[0]) & set(shards[1])) <= 1  # only the padding repeats
    assert shard_indices(21, DistInfo(), 3, 1) != shard_indices(21, DistInfo(), 3, 2)


def test_spec_augment_masks_with_zero_and_keeps_shape() -> None:
    torch.manual_seed(0)
    feats = torch.ones(4, 100, 128)
    out = SpecAugment(freq_mask=30, time_mask=30, num_masks=1)(feats)
    assert out.shape == feats.shape
    assert (out == 0).any() and set(out.unique().tolist()) <= {0.0, 1.0}


class _FixedProbs(torch.nn.Module):
    """Window -> probs from the window's first sample (which encodes a class)."""

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = torch.full((wave.shape[0], 6), 0.01)
        probs[torch.arange(wave.shape[0]), wave[:, 0].long()] = 0.9
        return probs, probs


def test_song_score_is_max_over_windows() -> None:
    window, hop = 10, 5
    # song 0: windows say class 2 then class 4; song 1: class 1 only.
    song0 = np.concatenate([np.full(5, 2.0), np.full(5, 2.0), np.full(5, 4.0), np.full(5, 4.0)])
    songs = SongSet([song0.astype(np.float32), np.ones(10, np.float32)], [4, 1])
    scores = score_songs(_FixedProbs(), songs, window, hop, batch_size=2, device=torch.device("cpu"))
    assert scores.shape == (2, 6)
    assert scores[0, 2] == pytest.approx(0.9) and scores[0, 4] == pytest.approx(0.9)
    hits = count_hits(scores, songs.labels)
    # song 0 ties classes 2 and 4 (a mean over windows would favour 2): top-5 hit, top-1 miss (stable order).
    assert (hits.songs, hits.top1, hits.top5) == (2, 1, 2)
    assert hits.rates() == (0.5, 1.0)


def test_run_writes_outputs_and_metrics_schema(trained: tuple[Path, dict]) -> None:
    out, metrics = trained
    for name in ("modelo_audio.pth", "metrics.json", "curves.png", "checkpoint.pt"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "metrics.json").read_text())
    assert data == json.loads(json.dumps(metrics))
    assert [set(e) for e in data["epochs"]] == [{"epoch", "train_loss", "val_top1", "val_top5"}] * 2
    assert [e["epoch"] for e in data["epochs"]] == [1, 2]
    assert 0.0 <= data["test_top1"] <= data["test_top5"] <= 1.0
    assert data["best_epoch"] in (1, 2) and data["train_time_s"] > 0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_weights_file_is_complete(trained: tuple[Path, dict], manifest: Path) -> None:
    out, metrics = trained
    wf = load_weights(out / "modelo_audio.pth")
    assert wf.labels == ["label0", "label1", "label2"]
    assert wf.model_config.depth == TINY_MODEL["depth"] and wf.model_config.num_classes == 3
    assert wf.norm_std > 0 and np.isfinite(wf.norm_mean)
    assert wf.train["metrics"]["test_top1"] == metrics["test_top1"]
    assert len(wf.train["data_fingerprint"]) == 64
    assert {"torch", "timm", "python"} <= set(wf.train["versions"])
    assert wf.train["config"]["epochs"] == 2
    assert TrainConfig.from_dict(wf.train["config"]) == tiny_config()  # incl. the nested augment
    assert wf.train["config"]["augment"] == AugmentConfig().to_dict()
    cal = wf.train["calibration"]  # the default "no match" threshold (training.calibrate)
    assert 0.0 < wf.train["threshold"] == cal["threshold"] <= 1.0 and wf.train["threshold_far"] == 0.01
    assert cal["null_clips"] >= 100 and cal["far_measured"] <= 0.01
    model = build_scoring_model(wf)
    probs, emb = model(torch.zeros(2, model.window_samples))
    assert probs.shape == (2, 3) and emb.shape == (2, TINY_MODEL["embed_dim"])


def test_run_without_test_split_reports_null(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", with_test=False)
    metrics = run(tiny_request(manifest, tmp_path / "out", epochs=1))
    assert metrics["test_top1"] is None and metrics["test_top5"] is None
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["test_top1"] is None


def _weights(tmp_path: Path, labels: list[str], **cfg: object) -> Path:
    ast_cfg = get_config("tiny", num_classes=len(labels), **{**TINY_MODEL, **cfg})
    model = build_scoring_model(WeightsFile("ast-sampleid/1", ast_cfg, FbankConfig(), labels, -5.0, 4.0,
                                            _fresh_state(ast_cfg), {}))
    path = tmp_path / "init.pth"
    save_weights(path, WeightsFile("ast-sampleid/1", ast_cfg, FbankConfig(), labels, -5.0, 4.0,
                                   model.ast.state_dict(), {}))
    return path


def _fresh_state(ast_cfg: object) -> dict[str, torch.Tensor]:
    from models import AST

    torch.manual_seed(1)
    return AST(ast_cfg).state_dict()


def test_init_from_keeps_head_for_same_labels(tmp_path: Path) -> None:
    labels = ["a", "b", "c"]
    path = _weights(tmp_path, labels)
    spec = init_spec(str(path), None, labels, {})
    assert spec.norm == (-5.0, 4.0) and spec.ast_cfg.depth == TINY_MODEL["depth"]
    model = spec.build()
    src = load_weights(path).state_dict
    for key, value in model.ast.state_dict().items():
        assert torch.equal(value, src[key]), key


def test_init_from_replaces_head_for_new_labels(tmp_path: Path) -> None:
    path = _weights(tmp_path, ["a", "b", "c"])
    spec = init_spec(str(path), None, ["a", "b", "c", "d"], {})
    assert spec.state_dict is not None and not set(HEAD_KEYS) & set(spec.state_dict)
    model = spec.build()
    assert model.ast.head.out_features == 4
    spec_reordered = init_spec(str(path), None, ["b", "a", "c"], {})
    assert spec_reordered.state_dict is not None and "head.weight" not in spec_reordered.state_dict


def test_init_from_keeps_the_init_files_layer_norm_eps(tmp_path: Path) -> None:
    """With --preset the preset gives frames and strides, but the eps the weights were trained with stay."""
    path = _weights(tmp_path, ["a", "b"], layer_norm_eps=1e-12, head_norm_eps=1e-5)
    spec = init_spec(str(path), "tiny", ["a", "b"], {})
    assert (spec.ast_cfg.layer_norm_eps, spec.ast_cfg.head_norm_eps) == (1e-12, 1e-5)
    model = spec.build().ast
    assert model.norm.eps == 1e-12 and model.head_norm.eps == 1e-5


def test_init_from_resamples_pos_embed_for_new_frames(tmp_path: Path) -> None:
    path = _weights(tmp_path, ["a", "b"])
    spec = init_spec(str(path), "tiny", ["a", "b"], {"target_frames": 148})
    expected = dataclasses.replace(get_config("tiny"), **{**TINY_MODEL, "target_frames": 148, "num_classes": 2})
    assert spec.ast_cfg == expected
    model = spec.build()
    assert model.ast.pos_embed.shape[1] == 2 + expected.grid[0] * expected.grid[1]
    assert torch.equal(model.ast.blocks[0].attn.qkv.weight, load_weights(path).state_dict["blocks.0.attn.qkv.weight"])


def test_window_loss_flat_target_for_background() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [5.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # [B, C]
    label = torch.tensor([0, BACKGROUND, BACKGROUND])  # [B]
    loss = window_loss(logits, label, label_smoothing=0.0)
    ce_known = F.cross_entropy(logits[:1], label[:1], reduction="sum")
    flat = -F.log_softmax(logits[1:], dim=1).mean(dim=1).sum()  # CE vs the uniform distribution
    assert torch.isclose(loss, (ce_known + flat) / 3)
    flat_only = window_loss(torch.zeros(2, 4), torch.tensor([BACKGROUND, BACKGROUND]), 0.1)
    assert torch.isclose(flat_only, torch.log(torch.tensor(4.0)))  # minimum: a flat prediction
    x = logits[1:2].clone().requires_grad_(True)
    window_loss(x, torch.tensor([BACKGROUND]), 0.0).backward()
    assert x.grad[0, 0] > 0 and (x.grad[0, 1:] < 0).all()  # pushes the confident logit down


def test_window_loss_without_background_is_plain_cross_entropy() -> None:
    logits, label = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    assert torch.isclose(window_loss(logits, label, 0.1), F.cross_entropy(logits, label, label_smoothing=0.1))


def test_unknown_model_override_is_a_config_error() -> None:
    from training.errors import ConfigError
    from training.model_setup import fresh_spec

    with pytest.raises(ConfigError, match="unknown model_overrides field 'dpth'; did you mean 'depth'"):
        fresh_spec("tiny", ["a", "b"], {"dpth": 1})
