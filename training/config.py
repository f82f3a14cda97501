"""Training hyper-parameters as data: one dataclass whose fields explain themselves, per-preset values, and
the JSON / TOML config files that set them.

The presets are tuned for their use: ``tiny`` trains from scratch on the demo catalogue on 2 CPU cores in a
few minutes; ``small`` / ``base`` assume a GPU and (for ``base``) usually ``--init-from`` a pretrained AST,
hence the lower learning rate. A preset names both the model size (``models.config.PRESETS``) and these
training values.

Precedence, lowest first: the dataclass defaults, the preset, the ``--config-file``, the command-line options.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data.augment import AugmentConfig
from training.errors import ConfigError

try:
    import tomllib
except ImportError:  # Python 3.10: JSON config files only
    tomllib = None  # type: ignore[assignment]

DEFAULT_PRESET = "tiny"
LEGACY_KEYS = {"variant": "preset"}  # older checkpoints and weights files named the preset "variant"
TOML_SUFFIXES = (".toml",)
DEVICES = ("auto", "cpu", "cuda")
OBJECTIVES = ("auto", "classify", "fingerprint")  # auto: fingerprint when the manifest has records
AMPS = ("auto", "off", "bf16")


@dataclass
class TrainConfig:
    """Everything that shapes a training run (saved in checkpoints and in the weights file)."""

    preset: str = DEFAULT_PRESET  # models.config.PRESETS name (and this module's PRESETS)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # ASTConfig fields to replace (tests)
    epochs: int = 24  # 768 steps of 32: ~7.5 min on 2 quiet CPU cores (measured 18 s per epoch incl. val)
    epoch_size: int = 1024  # training windows drawn per epoch (all ranks together)
    batch_size: int = 32  # per rank
    lr: float | None = None  # peak learning rate (AdamW); None: the objective's (OBJECTIVE_LR)
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
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # waveform augmentation (training.data)
    norm_windows: int = 128  # training windows used to estimate the fbank mean/std
    eval_batch_size: int = 64  # song windows per forward pass in validation (hop: serving.contract)
    threshold_far: float = 0.01  # false-accept rate of the calibrated default "no match" threshold (calibrate)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    workers: int = 0  # DataLoader workers (0 = in-process; measured fastest on 2 CPU cores)
    threads: int = 2  # torch intra-op threads on CPU (per rank)
    # The fingerprint objective (training.fingerprint): NT-Xent on record/song pairs + ce_weight x CE.
    objective: str = "auto"  # auto | classify | fingerprint (auto: fingerprint when records.csv has records)
    tau: float = 0.07  # NT-Xent temperature
    ce_weight: float = 0.5  # auxiliary cross-entropy on the record labels (keeps `probs` a classifier)
    pairs: int = 48  # positive pairs per step (2 x pairs views)
    budget_minutes: float = 0.0  # 0 = scaled with the catalogue audio: fingerprint.budget_seconds
    fp_dim: int = 128  # the exported embedding's width (ASTConfig.fp_dim)
    fp_frames: int = 200  # frames per window (ASTConfig.target_frames): 2 s
    amp: str = "auto"  # auto (bf16 on CUDA and on CPUs with avx512_bf16/amx_bf16) | off | bf16
    fp_check_every: int = 100  # steps between held-out pair accuracy checks (early stop)
    fp_heldout: int = 256  # fixed held-out pairs of those checks

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (tuples become lists) for checkpoints and weights files."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        data["augment"] = self.augment.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored and legacy names mapped (old files stay readable)."""
        data = {LEGACY_KEYS.get(k, k): v for k, v in data.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        if "betas" in known:
            known["betas"] = tuple(known["betas"])
        if isinstance(known.get("augment"), dict):
            known["augment"] = AugmentConfig.from_dict(known["augment"])
        return cls(**known)


OBJECTIVE_LR = {"classify": 1e-3, "fingerprint": 5e-4}  # the default peak rate (fingerprint: bench/NOTES.md #43, #44)


def peak_lr(cfg: TrainConfig, objective: str) -> float:
    """The run's peak learning rate: ``cfg.lr`` when set, else the ``objective``'s (:data:`OBJECTIVE_LR`)."""
    return cfg.lr if cfg.lr is not None else OBJECTIVE_LR[objective]


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},
    "small": {"lr": 5e-4, "epochs": 20, "epoch_size": 4096, "time_mask": 96},
    "base": {"lr": 5e-5, "epochs": 10, "epoch_size": 4096, "batch_size": 16, "time_mask": 160,
             "freq_mask": 48, "warmup_frac": 0.1},
}


def _unknown(key: str, known: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}"
    return ConfigError(f"unknown {where} {key!r}{hint}")


def make_config(preset: str = DEFAULT_PRESET, **overrides: Any) -> TrainConfig:
    """Preset ``preset`` with ``overrides`` applied (``None`` values are ignored).

    ``augment`` may be an :class:`AugmentConfig` or a dict of its fields (applied over the default).

    Raises:
        ConfigError: unknown preset or unknown field (one line, with a did-you-mean).
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values: dict[str, Any] = {"preset": preset, **PRESETS[preset]}
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    for key, value in overrides.items():
        if key not in names:
            raise _unknown(key, names, "TrainConfig field")
        if value is not None:
            values[key] = value
    if isinstance(values.get("augment"), dict):
        values["augment"] = _augment_from(values["augment"])
    return check_config(TrainConfig(**values))


POSITIVE_FIELDS = ("epochs", "epoch_size", "batch_size", "eval_batch_size", "norm_windows", "lr", "tau",
                   "fp_dim", "fp_frames", "fp_check_every", "fp_heldout")
NON_NEGATIVE_FIELDS = ("workers", "threads", "num_masks", "freq_mask", "time_mask", "weight_decay",
                       "label_smoothing", "min_lr_ratio", "warmup_frac", "ce_weight", "budget_minutes")


def check_config(cfg: TrainConfig) -> TrainConfig:
    """Refuse values no run can use (the CLI's option types check the same; config files need it here).

    Raises:
        ConfigError: the first bad field, in one line.
    """
    bad = [(n, "> 0") for n in POSITIVE_FIELDS if (v := getattr(cfg, n)) is not None and not v > 0]  # lr None: unset
    bad += [(n, ">= 0") for n in NON_NEGATIVE_FIELDS if not getattr(cfg, n) >= 0]
    if not 0.0 <= cfg.ema_decay < 1.0:
        bad.append(("ema_decay", "in [0, 1)"))
    if cfg.pairs < 2:
        bad.append(("pairs", ">= 2"))
    for name, choices in (("device", DEVICES), ("objective", OBJECTIVES), ("amp", AMPS)):
        if getattr(cfg, name) not in choices:
            bad.append((name, f"one of {', '.join(choices)}"))
    if bad:
        name, rule = bad[0]
        raise ConfigError(f"{name} must be {rule}, got {getattr(cfg, name)!r}")
    return cfg


def _augment_from(data: dict[str, Any]) -> AugmentConfig:
    names = [f.name for f in dataclasses.fields(AugmentConfig)]
    for key in data:
        if key not in names:
            raise _unknown(key, names, "augment field")
    return AugmentConfig.from_dict(data)


def _check_type(key: str, value: Any, default: Any) -> Any:
    """``value`` in the type of the field's ``default`` (ints pass as floats, lists as tuples)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int | float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and (isinstance(default, float) or isinstance(value, int))
    elif isinstance(default, tuple):
        ok = isinstance(value, list | tuple) and len(value) == len(default) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"config key {key!r} must be like {default!r}, got {value!r}")
    return value


def _checked(data: dict[str, Any], defaults: Any, prefix: str = "") -> dict[str, Any]:
    """``data`` with every key known to the dataclass instance ``defaults`` and every value of its type."""
    fields = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown(f"{prefix}{key}", [f"{prefix}{n}" for n in fields], "config key")
        default = fields[key]
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {prefix}{key!r} must be a table of {type(default).__name__} fields")
            out[key] = _checked(value, default, f"{prefix}{key}.")
        else:
            out[key] = _check_type(f"{prefix}{key}", value, default)
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (or, by its ``.toml`` suffix, TOML) file of :class:`TrainConfig` fields.

    ``augment`` is a nested object / table of :class:`AugmentConfig` fields; ``preset`` picks the preset the
    other values apply over.

    Returns:
        The checked fields, ready for :func:`make_config` (tuples for tuple fields).

    Raises:
        ConfigError: unreadable or malformed file, unknown key (with a did-you-mean), or a value of the wrong
            type (one line).
    """
    path = Path(path)
    is_toml = path.suffix.lower() in TOML_SUFFIXES
    if is_toml and tomllib is None:
        raise ConfigError(f"--config-file {path}: TOML needs Python 3.11 or later; write the file as JSON")
    parse_errors: tuple[type[Exception], ...] = (json.JSONDecodeError,)
    if tomllib is not None:
        parse_errors += (tomllib.TOMLDecodeError,)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if is_toml else json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read --config-file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    except parse_errors as exc:
        raise ConfigError(f"--config-file {path} is not valid {_kind(path)}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--config-file {path} must hold one object of TrainConfig fields")
    data = _checked(data, TrainConfig())
    if "preset" in data and data["preset"] not in PRESETS:
        raise ConfigError(f"--config-file {path}: unknown preset {data['preset']!r}; choose one of "
                          f"{', '.join(PRESETS)}")
    return data


def _kind(path: Path) -> str:
    return "TOML" if path.suffix.lower() in TOML_SUFFIXES else "JSON"
