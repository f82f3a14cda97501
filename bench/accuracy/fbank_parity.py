"""Frontend parity figures: KaldiFbank vs torchaudio.compliance.kaldi.fbank (the reference AST call).

Prints one row per dtype with the worst max-abs and mean-abs difference over every test signal and length,
against the DESIGN.md §3 tolerances.

    .venv/bin/python -m bench.accuracy.fbank_parity

Product and bench code never import ``tests``: the signals, lengths and bars are restated here (the same ones
``tests/models/test_fbank.py`` and ``tests/tolerances.py`` use; a drift there does not change these figures'
meaning, only which rows the tests cover).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torchaudio

from models import FbankConfig, KaldiFbank

SAMPLE_RATE = 16000
LENGTHS = (400, 401, 16000, 64240, 52800)  # one frame, one frame + 1, 1 s, the tiny window, 3.3 s
# DESIGN.md §3: float64 max abs; float32 max abs on log-mel and mean abs.
FBANK_F64_MAX_ABS = 1e-6
FBANK_F32_MAX_ABS = 5e-3
FBANK_F32_MEAN_ABS = 1e-4
CHORDS = ((220.0, 277.18, 329.63), (196.0, 246.94, 293.66))  # A major, then G major
HARMONICS = 6
GATE_HZ = 3.0  # noise bursts
DC_OFFSET = 0.05
CLIP_GAIN = 8.0
SQUARE_HZ = 110.0
QUIET, SOFT = 1e-5, 1e-3  # below the log floor everywhere; straddling it


def music(n: int, seed: int = 0, amplitude: float = 0.5) -> torch.Tensor:
    """Harmonic chords with a change half way, gated noise bursts and a DC offset: ``[n]`` float64."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64) / SAMPLE_RATE  # [n]
    half = t < t[-1] / 2 if n > 1 else torch.ones_like(t, dtype=torch.bool)  # [n]
    x = torch.zeros_like(t)  # [n]
    for root_a, root_b in zip(*CHORDS, strict=True):
        for h in range(1, HARMONICS + 1):
            freq = torch.where(half, torch.tensor(root_a), torch.tensor(root_b)) * h  # [n]
            x = x + torch.sin(2 * math.pi * freq * t + h) / h**1.5  # [n]
    gate = (torch.sin(2 * math.pi * GATE_HZ * t) > 0.6).to(torch.float64)  # [n]
    x = x + 2.0 * gate * torch.randn(n, generator=gen, dtype=torch.float64)  # [n]
    return amplitude * x / x.abs().max().clamp(min=1e-12) + DC_OFFSET  # [n]


def square(n: int) -> torch.Tensor:
    """Full-scale clipped sine: ``[n]`` float64."""
    t = torch.arange(n, dtype=torch.float64) / SAMPLE_RATE  # [n]
    return (CLIP_GAIN * torch.sin(2 * math.pi * SQUARE_HZ * t)).clamp(-1.0, 1.0)  # [n]


SIGNALS: dict[str, Callable[[int], torch.Tensor]] = {
    "music": music,
    "silence": lambda n: torch.zeros(n, dtype=torch.float64),
    "clipping": square,
    "quiet": lambda n: music(n, seed=1, amplitude=QUIET),
    "soft": lambda n: music(n, seed=2, amplitude=SOFT),
}


def reference(wave: torch.Tensor) -> torch.Tensor:
    """The official AST frontend for one waveform ``[S]`` -> ``[F, 128]``."""
    wave = wave - wave.mean()  # [S]
    return torchaudio.compliance.kaldi.fbank(
        wave[None], htk_compat=True, sample_frequency=SAMPLE_RATE, use_energy=False, window_type="hanning",
        num_mel_bins=128, dither=0.0, frame_shift=10,
    )  # [F, 128]


def diffs(fbank: KaldiFbank, wave: torch.Tensor, dtype: torch.dtype) -> tuple[float, float]:
    """Max and mean abs difference of ours (at ``dtype``) vs the float64 reference for one waveform."""
    ours = fbank.to(dtype)(wave.to(dtype)[None])[0]  # [F, M]
    err = (ours.double() - reference(wave.to(dtype)).double()).abs()  # [F, M]
    return err.max().item(), err.mean().item()


def main() -> None:
    fbank = KaldiFbank(FbankConfig())
    limits = {torch.float64: (FBANK_F64_MAX_ABS, None), torch.float32: (FBANK_F32_MAX_ABS, FBANK_F32_MEAN_ABS)}
    print("dtype    signals x lengths  max_abs    mean_abs   (tolerance max / mean)")
    for dtype, (max_tol, mean_tol) in limits.items():
        worst_max = worst_mean = 0.0
        for kind in sorted(SIGNALS):
            for length in LENGTHS:
                max_abs, mean_abs = diffs(fbank, SIGNALS[kind](length), dtype)
                worst_max, worst_mean = max(worst_max, max_abs), max(worst_mean, mean_abs)
        print(f"{str(dtype).removeprefix('torch.'):8} {len(SIGNALS)} x {len(LENGTHS):<13} {worst_max:<10.2e} "
              f"{worst_mean:<10.2e} ({max_tol:g} / {'-' if mean_tol is None else f'{mean_tol:g}'})")


if __name__ == "__main__":
    main()
