"""The peer a user would pick today: transformers' ASTForAudioClassification + ASTFeatureExtractor, eager.

Random weights (speed does not depend on them), a config matching ours (AST-base: 768-d, 12 layers,
stride 10, max_length 1024 frames, 527 classes), default attention implementation, and the feature extractor
run on the same raw waveforms our variants get, so both sides include the frontend.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from bench.speed.synth import SAMPLE_RATE
from bench.speed.timing import Runner, Unavailable

log = logging.getLogger(__name__)

PEER_NAME = "peer: HF transformers eager"
PEER_BF16_NAME = "peer: HF transformers eager, torch.autocast bf16"  # what a user who knows autocast gets


@dataclass
class PeerInfo:
    """What was built, for the report."""

    transformers_version: str
    attn_implementation: str
    dtype: str
    device: str


def _hf_config(ast_cfg: object, hf_cls: type) -> object:
    """Map our ASTConfig onto transformers' ASTConfig (same geometry, same head size)."""
    return hf_cls(
        hidden_size=ast_cfg.embed_dim,
        num_hidden_layers=ast_cfg.depth,
        num_attention_heads=ast_cfg.num_heads,
        intermediate_size=int(ast_cfg.embed_dim * ast_cfg.mlp_ratio),
        patch_size=ast_cfg.patch_size,
        frequency_stride=ast_cfg.fstride,
        time_stride=ast_cfg.tstride,
        max_length=ast_cfg.target_frames,
        num_mel_bins=ast_cfg.num_mel_bins,
        num_labels=ast_cfg.num_classes,
        qkv_bias=ast_cfg.qkv_bias,
    )


def build_peer(ast_cfg: object, device: str = "cpu", seed: int = 0,
               autocast_bf16: bool = False) -> tuple[Runner, PeerInfo]:
    """Build the peer runner: waveforms [B, S] -> softmax probs [B, C].

    ``autocast_bf16``: run the model (not the feature extractor) under ``torch.autocast(bfloat16)``.

    Raises:
        Unavailable: transformers missing, or CUDA requested without a GPU.
    """
    try:
        import torch
        import transformers
        from transformers import ASTConfig as HFASTConfig
        from transformers import ASTFeatureExtractor, ASTForAudioClassification
    except ImportError as exc:  # pragma: no cover - transformers is a test extra
        raise Unavailable(f"transformers not installed: {exc}") from exc
    if device == "cuda" and not torch.cuda.is_available():
        raise Unavailable("unmeasured: no GPU")
    torch.manual_seed(seed)
    config = _hf_config(ast_cfg, HFASTConfig)
    model = ASTForAudioClassification(config).eval().to(device)
    extractor = ASTFeatureExtractor(
        sampling_rate=SAMPLE_RATE, num_mel_bins=ast_cfg.num_mel_bins, max_length=ast_cfg.target_frames
    )

    def run(waveforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inputs = extractor(list(waveforms), sampling_rate=SAMPLE_RATE, return_tensors="pt")
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=autocast_bf16):
            logits = model(inputs["input_values"].to(device)).logits  # [B, C]
            probs = torch.softmax(logits, dim=-1).float().cpu().numpy()
        # The classifier does not return its pooled embedding; ours is not comparable anyway (other weights).
        return probs, np.zeros((len(waveforms), ast_cfg.embed_dim), dtype=np.float32)

    info = PeerInfo(
        transformers_version=transformers.__version__,
        attn_implementation=str(getattr(model.config, "_attn_implementation", "default")),
        dtype="bfloat16 (autocast)" if autocast_bf16 else "float32",
        device=device,
    )
    log.info("peer built: %s", info)
    return run, info
