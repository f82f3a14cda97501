"""AST: shapes, patch grids of the variants, head/feature split, fused vs eager attention, pos-embed resize."""

from __future__ import annotations

import pytest
import torch

from models import AST, PRESETS, get_config, resize_pos_embed
from models.ast import PatchEmbed

TIMM_NAMES = (
    "patch_embed.proj.weight", "cls_token", "dist_token", "pos_embed", "blocks.0.norm1.weight",
    "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight", "blocks.0.norm2.weight",
    "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight", "norm.weight", "head_norm.weight", "head.weight",
)
EXPECTED_GRIDS = {"tiny": (8, 25), "small": (10, 53), "base": (12, 101)}


@pytest.fixture(scope="module")
def tiny() -> AST:
    torch.manual_seed(0)
    return AST(get_config("tiny", num_classes=7)).eval()


def fbank_input(model: AST, batch: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, model.cfg.target_frames, model.cfg.num_mel_bins, generator=gen)  # [B, T, M]


def test_shapes_and_names(tiny: AST) -> None:
    x = fbank_input(tiny)  # [2, T, M]
    with torch.no_grad():
        f, t = tiny.cfg.grid
        assert tiny.forward_features(x).shape == (2, 2 + f * t, 192)  # tokens, as timm
        assert tiny.forward_head(tiny.forward_features(x), pre_logits=True).shape == (2, 192)
        assert tiny(x).shape == (2, 7)
    names = set(tiny.state_dict())
    assert set(TIMM_NAMES) <= names
    f, t = tiny.cfg.grid
    assert tiny.pos_embed.shape == (1, 2 + f * t, 192)


def test_head_and_features_compose(tiny: AST) -> None:
    x = fbank_input(tiny, batch=3)  # [3, T, M]
    with torch.no_grad():
        assert torch.allclose(tiny.forward_head(tiny.forward_features(x)), tiny(x), atol=0, rtol=0)


def test_fused_and_eager_attention_agree(tiny: AST) -> None:
    x = fbank_input(tiny, seed=1)  # [2, T, M]
    with torch.no_grad():
        tiny.set_fused_attn(True)
        fused = tiny(x)  # [2, C]
        tiny.set_fused_attn(False)
        eager = tiny(x)  # [2, C]
        tiny.set_fused_attn(True)
    assert all(block.attn.fused_attn for block in tiny.blocks)
    assert torch.allclose(fused, eager, atol=1e-5, rtol=1e-5)


def test_batch_rows_are_independent(tiny: AST) -> None:
    x = fbank_input(tiny, batch=3, seed=2)  # [3, T, M]
    with torch.no_grad():
        assert torch.allclose(tiny(x)[1:2], tiny(x[1:2]), atol=1e-5, rtol=1e-5)


def test_wrong_input_shape_raises(tiny: AST) -> None:
    with pytest.raises(ValueError, match="AST expects"):
        tiny(torch.zeros(1, tiny.cfg.target_frames + 1, 128))


def test_without_dist_token_pools_cls() -> None:
    model = AST(get_config("tiny", dist_token=False, depth=1, num_classes=3)).eval()
    assert model.dist_token is None and "dist_token" not in model.state_dict()
    assert model.pos_embed.shape[1] == 1 + 8 * 25
    with torch.no_grad():
        assert model(fbank_input(model)).shape == (2, 3)


def test_avg_pool_is_the_mean_of_the_normed_patch_tokens() -> None:
    torch.manual_seed(0)
    model = AST(get_config("tiny", global_pool="avg", depth=1, num_classes=3)).eval()
    x = fbank_input(model)
    captured: list[torch.Tensor] = []
    model.norm.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)  # [B, D]
    torch.testing.assert_close(pooled, captured[0][:, 2:].mean(dim=1))  # cls and dist tokens excluded
    with pytest.raises(ValueError, match="global_pool"):
        AST(get_config("tiny", global_pool="max", depth=1, num_classes=3))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_variant_grid(name: str) -> None:
    """Grid arithmetic of every variant matches what its strided Conv2d produces (cheap: patch embed only)."""
    cfg = get_config(name)
    assert cfg.grid == EXPECTED_GRIDS[name]
    embed = PatchEmbed(cfg)
    with torch.no_grad():
        patches = embed(torch.zeros(1, 1, cfg.num_mel_bins, cfg.target_frames))  # [1, Np, D]
    assert patches.shape == (1, cfg.grid[0] * cfg.grid[1], cfg.embed_dim)


def test_base_builds_once() -> None:
    """AST-base: ~87M parameters and the official 1214-token sequence (built once; no forward pass)."""
    model = AST(get_config("base"))
    params = sum(p.numel() for p in model.parameters())
    assert 85e6 < params < 90e6
    assert model.pos_embed.shape == (1, 2 + 12 * 101, 768)


def test_resize_pos_embed_is_pure_and_keeps_prefix() -> None:
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(1, 2 + 12 * 101, 16, generator=gen)  # [1, P+Np, D]
    before = pos.clone()
    out = resize_pos_embed(pos, (12, 101), (8, 24), num_prefix_tokens=2)  # [1, 2+8*24, D]
    assert out.shape == (1, 2 + 8 * 24, 16)
    assert torch.equal(out[:, :2], pos[:, :2]) and torch.equal(pos, before)
    same = resize_pos_embed(pos, (12, 101), (12, 101), num_prefix_tokens=2)
    assert torch.allclose(same, pos)
    with pytest.raises(ValueError, match="does not match grid"):
        resize_pos_embed(pos, (8, 24), (12, 101), num_prefix_tokens=2)


def test_head_norm_eps_defaults_to_layer_norm_eps() -> None:
    shared = AST(get_config("tiny", depth=1, num_classes=2))
    assert shared.head_norm.eps == shared.norm.eps == 1e-6
    split = AST(get_config("tiny", depth=1, num_classes=2, head_norm_eps=1e-5))
    assert split.head_norm.eps == 1e-5 and split.norm.eps == split.blocks[0].norm1.eps == 1e-6


def test_fingerprint_head_sets_the_embedding_width() -> None:
    from models import AUDIOSET_MEAN, AUDIOSET_STD, FbankConfig, ScoringModel

    cfg = get_config("tiny", depth=1, num_classes=3, fp_dim=16, target_frames=48)
    model = ScoringModel(FbankConfig(), cfg, AUDIOSET_MEAN, AUDIOSET_STD).eval()
    assert cfg.embedding_dim == 16 and get_config("tiny").embedding_dim == 192
    with torch.no_grad():
        probs, emb = model(torch.randn(2, model.window_samples) * 0.1)
    assert probs.shape == (2, 3) and emb.shape == (2, 16)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    assert {"fp_head.0.weight", "fp_head.2.weight"} <= set(model.ast.state_dict())
