"""Music-like synthetic clips for speed runs and top-1 agreement (the project's one synthesiser:
:func:`training.data.synth.music_clip`).

Random noise would make every precision's argmax agree trivially (or flip at random); clips with tonal
harmony, a bass line and drums exercise the frontend and the encoder the way real music does.
"""

from __future__ import annotations

import numpy as np

from training.data.synth import SAMPLE_RATE, music_clip

__all__ = ["SAMPLE_RATE", "music_clip", "music_clips"]


def music_clips(count: int, samples: int, seed: int = 0) -> np.ndarray:
    """``count`` independent clips, deterministic for a seed.

    Returns:
        float32 array [count, samples].
    """
    rng = np.random.default_rng(seed)
    return np.stack([music_clip(samples, rng) for _ in range(count)])  # [N, S]
