"""Audio Spectrogram Transformer (Gong et al., 2021) built from timm's ViT ``Block``.

Reads like the official AST ``ASTModel`` (a DeiT with a one-channel, strided patch embedding over the
spectrogram) with timm's parameter names, so official AST / DeiT / Hugging Face checkpoints map onto it
with a few key swaps (see ``ast_export/importers/``):

    fbank [B, T, M] -> [B, 1, M, T] -> Conv2d patches -> + (cls, dist) tokens -> + pos_embed
        -> blocks -> norm (forward_features: tokens) -> (x[:, 0] + x[:, 1]) / 2 (or the patch tokens' mean)
        -> head_norm -> head (forward_head)

The official ``mlp_head = Sequential(LayerNorm, Linear)`` is split into ``head_norm`` and ``head``.
The blocks' LayerNorms and the final ``norm`` use ``ASTConfig.layer_norm_eps``; ``head_norm`` uses
``ASTConfig.head_eps`` (``head_norm_eps`` when set: 1e-5 for official checkpoints, whose ``mlp_head`` LayerNorm
kept torch's default, else the same eps).
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from models.config import ASTConfig

# ViT / DeiT initialisation scale for tokens, position embeddings and linear layers.
INIT_STD = 0.02
GLOBAL_POOLS = ("token", "avg")  # ASTConfig.global_pool values


class PatchEmbed(nn.Module):
    """Strided Conv2d patches over a one-channel spectrogram: ``[B, 1, M, T]`` -> ``[B, Np, D]``."""

    def __init__(self, cfg: ASTConfig) -> None:
        super().__init__()
        self.grid = cfg.grid
        self.proj = nn.Conv2d(1, cfg.embed_dim, kernel_size=cfg.patch_size, stride=(cfg.fstride, cfg.tstride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # [B, D, f, t]
        return x.flatten(2).transpose(1, 2)  # [B, f*t, D]


class AST(nn.Module):
    """AST encoder and classifier. Input: normalised fbank ``[B, T, M]`` with ``T == cfg.target_frames``."""

    def __init__(self, cfg: ASTConfig) -> None:
        super().__init__()
        if cfg.global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool must be one of {', '.join(GLOBAL_POOLS)}; got {cfg.global_pool!r}")
        if cfg.embed_dim % cfg.num_heads:
            raise ValueError(f"embed_dim {cfg.embed_dim} is not divisible by num_heads {cfg.num_heads}")
        if min(cfg.grid) < 1:
            raise ValueError(
                f"patch_size {cfg.patch_size} does not fit a {cfg.num_mel_bins}x{cfg.target_frames} input"
            )
        self.cfg = cfg
        dim = cfg.embed_dim
        norm_layer = partial(nn.LayerNorm, eps=cfg.layer_norm_eps)
        self.num_prefix_tokens = cfg.num_prefix_tokens
        self.patch_embed = PatchEmbed(cfg)
        num_patches = cfg.grid[0] * cfg.grid[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))  # [1, 1, D]
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if cfg.dist_token else None  # [1, 1, D]
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.num_prefix_tokens + num_patches, dim)
        )  # [1, P+Np, D]
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        drop_path = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()  # stochastic depth decay rule
        self.blocks = nn.Sequential(
            *[
                Block(
                    dim,
                    cfg.num_heads,
                    mlp_ratio=cfg.mlp_ratio,
                    qkv_bias=cfg.qkv_bias,
                    proj_drop=cfg.drop_rate,
                    attn_drop=cfg.attn_drop_rate,
                    drop_path=drop_path[i],
                    norm_layer=norm_layer,
                )
                for i in range(cfg.depth)
            ]
        )
        self.norm = norm_layer(dim)
        self.head_norm = nn.LayerNorm(dim, eps=cfg.head_eps)
        self.head = nn.Linear(dim, cfg.num_classes)
        self.fp_head = _fingerprint_head(dim, cfg.fp_dim) if cfg.fp_dim > 0 else None
        self.init_weights()
        self.set_fused_attn(True)  # SDPA for training; exporters switch to the explicit form

    def init_weights(self) -> None:
        """ViT/DeiT init: truncated normal (std 0.02) for tokens, positions and linears; unit LayerNorms."""
        for token in (self.cls_token, self.dist_token, self.pos_embed):
            if token is not None:
                trunc_normal_(token, std=INIT_STD)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=INIT_STD)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def set_fused_attn(self, enabled: bool) -> None:
        """Use SDPA (``True``, fast training) or explicit ``softmax(q k^T) v`` (``False``, for export:
        ONNX Runtime's transformer optimizer recognises and fuses the explicit pattern)."""
        for block in self.blocks:
            block.attn.fused_attn = enabled

    def _prefix_tokens(self, batch: int) -> torch.Tensor:
        cls = self.cls_token.expand(batch, -1, -1)  # [B, 1, D]
        if self.dist_token is None:
            return cls
        return torch.cat([cls, self.dist_token.expand(batch, -1, -1)], dim=1)  # [B, 2, D]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, P+Np, D]`` after the final norm (prefix tokens first, then the patch grid in
        frequency-major order), as timm's ``forward_features``: nothing is pooled yet."""
        expected = (self.cfg.target_frames, self.cfg.num_mel_bins)
        if not torch.jit.is_tracing() and (x.dim() != 3 or tuple(x.shape[1:]) != expected):
            raise ValueError(
                f"AST expects fbank [batch, {self.cfg.target_frames}, {self.cfg.num_mel_bins}]; "
                f"got {tuple(x.shape)}"
            )
        x = x.unsqueeze(1).transpose(2, 3)  # [B, 1, M, T]
        x = self.patch_embed(x)  # [B, Np, D]
        x = torch.cat([self._prefix_tokens(x.shape[0]), x], dim=1)  # [B, P+Np, D]
        x = self.pos_drop(x + self.pos_embed)  # [B, P+Np, D]
        x = self.blocks(x)  # [B, P+Np, D]
        return self.norm(x)  # [B, P+Np, D]

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pooled embedding ``[B, D]``: the mean of the cls and dist tokens (cls alone without a dist token), or
        with ``global_pool="avg"`` the mean of the patch tokens."""
        if self.cfg.global_pool == "avg":
            return tokens[:, self.cfg.num_prefix_tokens:].mean(dim=1)  # [B, D]
        if self.dist_token is None:
            return tokens[:, 0]  # [B, D]
        return (tokens[:, 0] + tokens[:, 1]) / 2  # [B, D]

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` from the pooled embedding ``[B, D]``."""
        return self.head(self.head_norm(pooled))  # [B, C]

    def fingerprint(self, pooled: torch.Tensor) -> torch.Tensor:
        """The (not yet normalised) embedding ``[B, E]``: the fingerprint projection of the pooled ``[B, D]``,
        or the pooled embedding itself when the config has none (``fp_dim == 0``)."""
        return pooled if self.fp_head is None else self.fp_head(pooled)  # [B, E]

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits ``[B, C]`` from tokens ``[B, P+Np, D]`` (the pooled ``[B, D]`` with ``pre_logits``), as timm."""
        pooled = self.pool(tokens)  # [B, D]
        return pooled if pre_logits else self.classify(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` from normalised fbank ``[B, T, M]``."""
        return self.forward_head(self.forward_features(x))  # [B, C]


def _fingerprint_head(dim: int, out: int) -> nn.Module:
    """Projection of the pooled embedding to the fingerprint (Linear-GELU-Linear, as SimCLR's head)."""
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, out))


def resize_pos_embed(
    pos_embed: torch.Tensor,
    old_grid: tuple[int, int],
    new_grid: tuple[int, int],
    num_prefix_tokens: int,
) -> torch.Tensor:
    """Resample a position embedding ``[1, P+f*t, D]`` from ``old_grid`` to ``new_grid`` (f, t).

    Prefix (cls/dist) rows are kept; the patch rows are bicubically resampled as a 2-D (frequency, time)
    map with timm's ``resample_abs_pos_embed``. Pure: the input is not modified.
    """
    expected = num_prefix_tokens + old_grid[0] * old_grid[1]
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1 or pos_embed.shape[1] != expected:
        raise ValueError(
            f"pos_embed {tuple(pos_embed.shape)} does not match grid {old_grid} "
            f"with {num_prefix_tokens} prefix tokens (expected [1, {expected}, D])"
        )
    return resample_abs_pos_embed(
        pos_embed.detach().clone(),
        new_size=list(new_grid),
        old_size=list(old_grid),
        num_prefix_tokens=num_prefix_tokens,
    )  # [1, P+f'*t', D]
