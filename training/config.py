"""Training hyper-parameters: one dataclass whose fields explain themselves, plus per-variant presets.

The presets are tuned for their use: ``tiny`` trains from scratch on the demo catalogue on 2 CPU cores in a
few minutes; ``small`` / ``base`` assume a GPU and (for ``base``) usually ``--init-from`` a pretrained AST,
hence the lower learning rate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DEFAULT_VARIANT = "tiny"


@dataclass
class TrainConfig:
    """Everything that shapes a training run (saved in checkpoints and in the weights file)."""

    variant: str = DEFAULT_VARIANT  # models.config.VARIANTS name
    model_overrides: dict[str, Any] = field(default_factory=dict)  # ASTConfig fields to replace (tests)
    epochs: int = 24  # 768 steps of 32: ~7.5 min on 2 quiet CPU cores (measured 18 s per epoch incl. val)
    epoch_size: int = 1024  # training windows drawn per epoch (all ranks together)
    batch_size: int = 32  # per rank
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.02  # cosine floor, as a fraction of lr
    warmup_frac: float = 0.06  # fraction of all steps spent in linear warm-up
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    label_smoothing: float = 0.1
    ema_decay: float = 0.0  # > 0: validate and keep a moving average of the weights (training.ema)
    grad_clip: float = 1.0  # max global grad norm; <= 0 disables clipping
    freq_mask: int = 24  # SpecAugment max mel bins masked (0 disables)
    time_mask: int = 60  # SpecAugment max frames masked (0 disables)
    num_masks: int = 1  # masks of each kind per example
    norm_windows: int = 128  # training windows used to estimate the fbank mean/std
    eval_batch_size: int = 64
    hop_fraction: float = 0.5  # song-level eval hop, as a fraction of the window (shared scoring rule)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    workers: int = 0  # DataLoader workers (0 = in-process; measured fastest on 2 CPU cores)
    threads: int = 2  # torch intra-op threads on CPU (per rank)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (tuples become lists) for checkpoints and weights files."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (older checkpoints stay readable)."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        if "betas" in known:
            known["betas"] = tuple(known["betas"])
        return cls(**known)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},
    "small": {"lr": 5e-4, "epochs": 20, "epoch_size": 4096, "time_mask": 96},
    "base": {"lr": 5e-5, "epochs": 10, "epoch_size": 4096, "batch_size": 16, "time_mask": 160,
             "freq_mask": 48, "warmup_frac": 0.1},
}


def make_config(variant: str = DEFAULT_VARIANT, **overrides: Any) -> TrainConfig:
    """Preset for ``variant`` with ``overrides`` applied (``None`` values are ignored).

    Raises:
        ValueError: unknown variant or unknown field.
    """
    if variant not in PRESETS:
        raise ValueError(f"unknown config {variant!r}; choose one of {', '.join(PRESETS)}")
    values: dict[str, Any] = {"variant": variant, **PRESETS[variant]}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(f"unknown TrainConfig field {key!r}")
        if value is not None:
            values[key] = value
    return TrainConfig(**values)
