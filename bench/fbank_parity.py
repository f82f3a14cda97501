"""Frontend parity figures: KaldiFbank vs torchaudio.compliance.kaldi.fbank (the reference AST call).

Prints one row per dtype with the worst max-abs and mean-abs difference over every test signal and length
(the same signals and lengths the parity tests use), against the DESIGN.md tolerances.

    .venv/bin/python -m bench.fbank_parity
"""

from __future__ import annotations

import torch

from models import FbankConfig, KaldiFbank
from tests import tolerances as tol
from tests.models.test_fbank import LENGTHS, SIGNALS, diffs


def main() -> None:
    fbank = KaldiFbank(FbankConfig())
    limits = {torch.float64: (tol.FBANK_F64_MAX_ABS, None),
              torch.float32: (tol.FBANK_F32_MAX_ABS, tol.FBANK_F32_MEAN_ABS)}
    print("dtype    signals x lengths  max_abs    mean_abs   (tolerance max / mean)")
    for dtype, (max_tol, mean_tol) in limits.items():
        worst_max = worst_mean = 0.0
        for kind in sorted(SIGNALS):
            for length in LENGTHS:
                max_abs, mean_abs = diffs(fbank, [SIGNALS[kind](length)], dtype)
                worst_max, worst_mean = max(worst_max, max_abs), max(worst_mean, mean_abs)
        print(f"{str(dtype).removeprefix('torch.'):8} {len(SIGNALS)} x {len(LENGTHS):<13} {worst_max:<10.2e} "
              f"{worst_mean:<10.2e} ({max_tol:g} / {'-' if mean_tol is None else f'{mean_tol:g}'})")


if __name__ == "__main__":
    main()
