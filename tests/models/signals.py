"""Deterministic test signals: float64 torch tensors at 16 kHz."""

from __future__ import annotations

import math

import torch

SAMPLE_RATE = 16000


def music(num_samples: int, seed: int = 0, amplitude: float = 0.5) -> torch.Tensor:
    """Harmonic tones, a chord change and gated noise bursts, plus a DC offset: ``[S]`` float64."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples, dtype=torch.float64) / SAMPLE_RATE  # [S]
    half = t < t[-1] / 2 if num_samples > 1 else torch.ones_like(t, dtype=torch.bool)  # [S]
    chord_a = (220.0, 277.18, 329.63)  # A major
    chord_b = (196.0, 246.94, 293.66)  # G major
    x = torch.zeros_like(t)  # [S]
    for root_a, root_b in zip(chord_a, chord_b, strict=True):
        for harmonic in range(1, 7):
            freq = torch.where(half, torch.tensor(root_a), torch.tensor(root_b)) * harmonic  # [S]
            x = x + torch.sin(2 * math.pi * freq * t + harmonic) / harmonic**1.5  # [S]
    gate = (torch.sin(2 * math.pi * 3.0 * t) > 0.6).to(torch.float64)  # [S] noise bursts
    x = x + 2.0 * gate * torch.randn(num_samples, generator=gen, dtype=torch.float64)  # [S]
    x = x / x.abs().max().clamp(min=1e-12)  # [S]
    return amplitude * x + 0.05  # [S]


def square(num_samples: int, freq: float = 110.0) -> torch.Tensor:
    """Full-scale clipped square-ish wave in [-1, 1]: ``[S]`` float64."""
    t = torch.arange(num_samples, dtype=torch.float64) / SAMPLE_RATE  # [S]
    return (8.0 * torch.sin(2 * math.pi * freq * t)).clamp(-1.0, 1.0)  # [S]


def silence(num_samples: int) -> torch.Tensor:
    """Digital silence: ``[S]`` float64 zeros."""
    return torch.zeros(num_samples, dtype=torch.float64)
