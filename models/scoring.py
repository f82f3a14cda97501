"""The scoring model: one fixed-length waveform window in, class probabilities and an embedding out.

This is exactly what the exported graphs contain (the whole frontend included):

    waveform [B, S] -> KaldiFbank (row mean removal + Kaldi fbank) -> pad with zeros / crop to
    ast_cfg.target_frames -> (x - norm_mean) / (2 * norm_std) -> AST -> (probs, embedding)

Order of pad and normalisation: the official AST recipe pads the *unnormalised* fbank with zeros
(``ZeroPad2d`` in ``_wav2fbank``) and normalises afterwards in ``__getitem__``, so padded frames hold
``-mean / (2 * std)`` after normalisation, not 0. We keep that order so imported AST checkpoints see what
they were trained on. With ``S == window_samples`` (the exported contract) the frontend yields exactly
``target_frames`` frames and neither pad nor crop happens; both are there for other lengths in eager use.
The pad/crop is one ``F.pad`` whose amount depends only on the (static) input length, so the graph has
no data-dependent control flow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.ast import AST
from models.config import ASTConfig, FbankConfig, window_samples
from models.fbank import KaldiFbank


class ScoringModel(nn.Module):
    """Frontend + normalisation + AST; ``forward(waveform [B, S]) -> (probs [B, C], embedding [B, E])``
    (``E = ast_cfg.embedding_dim``)."""

    def __init__(self, fbank_cfg: FbankConfig, ast_cfg: ASTConfig, norm_mean: float, norm_std: float) -> None:
        super().__init__()
        if fbank_cfg.num_mel_bins != ast_cfg.num_mel_bins:
            raise ValueError(
                f"fbank num_mel_bins {fbank_cfg.num_mel_bins} != AST num_mel_bins {ast_cfg.num_mel_bins}"
            )
        if not norm_std > 0.0:
            raise ValueError(f"norm_std must be positive; got {norm_std}")
        self.fbank = KaldiFbank(fbank_cfg)
        self.ast = AST(ast_cfg)
        self.norm_mean = float(norm_mean)
        self.norm_std = float(norm_std)
        self.target_frames = ast_cfg.target_frames
        self.window_samples = window_samples(fbank_cfg, ast_cfg)

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """Normalised fbank ``[B, T, M]`` (``T = target_frames``) of waveforms ``[B, S]``."""
        x = self.fbank(waveform)  # [B, F, M]
        # Zeros appended in time (a negative amount crops), before normalisation. ``extra`` is a Python int
        # under eager and torch.export (static frame count) and a traced value under jit.trace, where
        # the pad is kept unconditionally (a no-op when it is 0) to avoid branching on a traced value.
        extra = self.target_frames - x.shape[1]
        if not isinstance(extra, int) or extra != 0:
            x = F.pad(x, (0, 0, 0, extra))  # [B, T, M]
        return (x - self.norm_mean) / (2.0 * self.norm_std)  # [B, T, M]

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax probabilities ``[B, C]`` and the L2-normalised embedding ``[B, E]`` (the fingerprint)."""
        tokens = self.ast.forward_features(self.features(waveform))  # [B, P+Np, D]
        pooled = self.ast.pool(tokens)  # [B, D]
        probs = self.ast.classify(pooled).softmax(dim=-1)  # [B, C]
        embedding = F.normalize(self.ast.fingerprint(pooled), dim=-1)  # [B, E]
        return probs, embedding
