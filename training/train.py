"""``ast-train`` end to end: validate inputs, set up the model and data, run the epochs, write the outputs.

Outputs in ``out_dir`` (written by rank 0 only):

* ``modelo_audio.pth`` -- the weights of the **best validation epoch** (highest song-level val top-1, then
  top-5; ties go to the later epoch; the last epoch when there is no val split), with ``train`` holding the
  metrics, data fingerprint, software versions, config and wall time.
* ``metrics.json`` -- ``{"epochs": [{"epoch", "train_loss", "val_top1", "val_top5"}, ...], "test_top1",
  "test_top5", "best_epoch", "train_time_s", ...}``; test metrics are those of the saved weights (null
  without a test split).
* ``curves.png`` -- train loss and val accuracy per epoch.
* ``checkpoint.pt`` -- everything ``--resume`` needs, rewritten atomically after every epoch.

Resuming reuses the checkpoint's config and continues after the last completed epoch with the saved model,
optimizer, scheduler and RNG states, so it ends where an uninterrupted run ends. Only the options given
explicitly (:attr:`TrainRequest.given`) override the checkpoint's config: ``device``, ``workers`` and
``threads`` freely; ``epochs`` too (not below the epochs already done), and the warm-up + cosine schedule is
then rebuilt for the new total from the current step on. Any other option that differs from the checkpoint
(preset, batch size, epoch size, learning rate, augmentation, seed, ...) is refused with a
:class:`~training.errors.ConfigError`: it would change the model, the data or the schedule mid-run; train into a
new ``--out`` instead.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import save_weights, window_samples
from models.config import ast_config_from_dict, config_to_dict, fbank_config_from_dict
from serving.contract import default_hop, remove_stale_temps
from training import distributed
from training.calibrate import Calibration, calibrate, null_clips
from training.checkpoint import CHECKPOINT_NAME, Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data.audio import read_audio
from training.data.dataset import TrainWindows
from training.data.manifest import Manifest, load_manifest
from training.distributed import DistInfo
from training.errors import ConfigError
from training.loop import Trainer
from training.metrics import CURVES_NAME, METRICS_NAME, SongSet, plot_curves, write_metrics
from training.model_setup import (
    ModelSpec,
    data_fingerprint,
    estimate_norm,
    fresh_spec,
    init_spec,
    software_versions,
    weights_file,
)
from training.out_dir import check_free_space, check_out_dir, writing

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "modelo_audio.pth"
NORM_EPOCH = 1_000_000  # epoch index whose windows estimate the norm stats (never trained on)
RESUME_CHANGEABLE = ("epochs", "device", "workers", "threads")  # options --resume may change


@dataclass
class TrainRequest:
    """What the CLI asks for (paths and modes; hyper-parameters live in :class:`TrainConfig`)."""

    manifest: Path
    out_dir: Path
    config: TrainConfig
    init_from: str | None = None
    init_sha256: str | None = None  # expected SHA-256 of the --init-from file
    resume: bool = False
    preset_given: bool = True  # False: --init-from decides the model size
    given: frozenset[str] | None = None  # TrainConfig fields set explicitly (None: all); matter on resume


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``auto`` -> CUDA when available; under DDP on CUDA each rank takes GPU ``local_rank``.

    Raises:
        ConfigError: ``cuda`` without a CUDA device, or an unknown name.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda requested but no CUDA device is available (use --device cpu)")
        return torch.device("cuda", info.local_rank % torch.cuda.device_count())
    if name != "cpu":
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device("cpu")


def resolve_objective(objective: str, manifest: Manifest) -> str:
    """``auto`` -> ``fingerprint`` when the manifest has records (records.csv), else ``classify``."""
    if objective == "auto":
        objective = "fingerprint" if manifest.records else "classify"
        logger.info("objective: %s (%s)", objective, "records.csv lists records" if manifest.records
                    else "no records.csv records")
    return objective


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and ``random``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_songs(entries: list[Any], labels: list[str], sample_rate: int) -> SongSet:
    """Decode whole songs (the eval rule scores complete songs) into memory."""
    index = {label: i for i, label in enumerate(labels)}
    return SongSet([read_audio(e.path, sample_rate) for e in entries], [index[e.sample] for e in entries])


def _spec_from_checkpoint(ckpt: Checkpoint, manifest: Manifest) -> ModelSpec:
    if list(ckpt.labels) != list(manifest.labels):
        raise CheckpointError("checkpoint labels differ from the manifest's; resume with the same manifest")
    return ModelSpec(fbank_config_from_dict(ckpt.fbank_config), ast_config_from_dict(ckpt.model_config),
                     list(ckpt.labels), ckpt.norm, None, ckpt.init_from)


def _resolve_spec(req: TrainRequest, manifest: Manifest, ckpt: Checkpoint | None) -> ModelSpec:
    cfg = req.config
    if ckpt is not None:
        return _spec_from_checkpoint(ckpt, manifest)
    if req.init_from:
        preset = cfg.preset if req.preset_given else None
        return init_spec(req.init_from, preset, manifest.labels, cfg.model_overrides, req.init_sha256)
    return fresh_spec(cfg.preset, manifest.labels, cfg.model_overrides)


def _resume_config(req: TrainRequest, ckpt: Checkpoint) -> TrainConfig:
    """The checkpoint's config with the explicitly given options applied (rules in the module docstring).

    Raises:
        ConfigError: a given option would change what cannot change mid-run (one line).
    """
    saved = ckpt.config
    names = req.given if req.given is not None else {f.name for f in dataclasses.fields(TrainConfig)}
    changes = {n: getattr(req.config, n) for n in sorted(names) if getattr(req.config, n) != getattr(saved, n)}
    fixed = [n for n in changes if n not in RESUME_CHANGEABLE]
    if fixed:
        name = fixed[0]
        raise ConfigError(f"--resume cannot change {name} (checkpoint: {getattr(saved, name)!r}, asked: "
                          f"{changes[name]!r}); drop the option or train into a new --out")
    if changes.get("epochs", ckpt.epoch) < ckpt.epoch:
        raise ConfigError(f"--resume: --epochs {changes['epochs']} is fewer than the {ckpt.epoch} epochs "
                          "the checkpoint has already completed")
    if changes:
        logger.info("resuming with the checkpoint's config, except %s",
                    ", ".join(f"{n}={v!r}" for n, v in changes.items()))
    return dataclasses.replace(saved, **changes)


def prepare(req: TrainRequest, info: DistInfo) -> tuple[Manifest, Checkpoint | None]:
    """Checks that must pass before any training step: manifest, output folder, checkpoint."""
    manifest = load_manifest(req.manifest)
    check_out_dir(req.out_dir, info.rank)
    if info.is_main:  # the one writer: drop temp files of writes a killed run left unfinished
        remove_stale_temps(req.out_dir, (CHECKPOINT_NAME, WEIGHTS_NAME, METRICS_NAME))
    ckpt = load_checkpoint(req.out_dir / CHECKPOINT_NAME) if req.resume else None
    if ckpt is not None:
        req.config = _resume_config(req, ckpt)
    return manifest, ckpt


def build(req: TrainRequest, manifest: Manifest, ckpt: Checkpoint | None, info: DistInfo,
          device: torch.device) -> tuple[Trainer, ModelSpec]:
    """Model spec, norm stats, training windows and the :class:`Trainer` (state restored on resume)."""
    cfg = req.config
    seed_everything(cfg.seed)
    spec = _resolve_spec(req, manifest, ckpt)
    check_free_space(req.out_dir, spec.ast_cfg)  # every rank, so that all of them stop together
    window = window_samples(spec.fbank_cfg, spec.ast_cfg)
    train_set = TrainWindows(manifest, window, seed=cfg.seed, augment=cfg.augment, epoch_size=cfg.epoch_size)
    if spec.norm is None:
        # A far-away epoch of the same stream: windows like the training ones, without decoding twice.
        train_set.set_epoch(NORM_EPOCH)
        spec.norm = estimate_norm(spec.fbank_cfg, train_set, cfg.norm_windows)
        train_set.set_epoch(0)
        logger.info("fbank norm stats from %d training windows: mean %.4f std %.4f",
                    min(cfg.norm_windows, len(train_set)), *spec.norm)
    model = spec.build().to(device)
    trainer = Trainer(cfg, model, train_set, info, device)
    if ckpt is not None:
        trainer.load_checkpoint_state(ckpt)
        logger.info("resumed from %s after epoch %d", req.out_dir / CHECKPOINT_NAME, trainer.state.epoch)
    return trainer, spec


def _checkpoint(req: TrainRequest, trainer: Trainer, spec: ModelSpec) -> Checkpoint:
    return Checkpoint(config=req.config, **trainer.checkpoint_state(), model_config=config_to_dict(spec.ast_cfg),
                      fbank_config=config_to_dict(spec.fbank_cfg), labels=list(spec.labels),
                      norm=spec.norm or (0.0, 1.0), init_from=spec.init_from)  # norm: always set by build()


def calibrate_threshold(cfg: TrainConfig, model: torch.nn.Module, device: torch.device, spec: ModelSpec,
                        manifest: Manifest, val: SongSet) -> Calibration:
    """The default "no match" threshold of the kept weights (training.calibrate), on val songs and null clips."""
    entries = manifest.split("val")
    spans: dict[Any, list[tuple[float | None, float | None]]] = {}
    first: dict[Any, int] = {}
    for i, entry in enumerate(entries):  # a song that samples several records: outside all of their spans
        spans.setdefault(entry.path, []).append((entry.start_s, entry.end_s))
        first.setdefault(entry.path, i)
    window = model.window_samples
    null = null_clips([val.waves[i] for i in first.values()], [spans[p] for p in first], window,
                      spec.fbank_cfg.sample_rate)
    return calibrate(model, val, null, cfg.threshold_far, window, default_hop(window), cfg.eval_batch_size, device)


def _finish(req: TrainRequest, trainer: Trainer, spec: ModelSpec, manifest: Manifest,
            val: SongSet, test: SongSet) -> dict[str, Any]:
    """Best weights -> test metrics, calibrated threshold -> weights file, metrics.json, curves.png (rank 0)."""
    st, cfg, info = trainer.state, req.config, trainer.info
    if st.best_state is not None:
        trainer.model.ast.load_state_dict(st.best_state)
    test_metrics = trainer.evaluate(test) if len(test) else (None, None)
    extra = {"best_epoch": st.best_epoch, "train_time_s": round(st.elapsed_s, 3),
             "epoch_time_s": [round(s, 3) for s in st.epoch_seconds], "world_size": info.world_size,
             "device": trainer.device.type}
    metrics = {"epochs": st.history, "test_top1": test_metrics[0], "test_top5": test_metrics[1], **extra}
    if not info.is_main:
        return {**metrics, "rank": info.rank}
    cal = calibrate_threshold(cfg, trainer.model, trainer.device, spec, manifest, val)
    metrics["calibration"] = extra["calibration"] = cal.to_dict()
    train_info = {"metrics": metrics, "data_fingerprint": data_fingerprint(req.manifest, manifest),
                  "versions": software_versions(), "config": cfg.to_dict(), "train_time_s": st.elapsed_s,
                  "init_from": spec.init_from, "manifest": str(req.manifest),
                  "threshold": cal.threshold, "threshold_far": cal.far, "calibration": cal.to_dict()}
    with writing(req.out_dir):
        save_weights(req.out_dir / WEIGHTS_NAME, weights_file(spec, trainer.model.ast.state_dict(), train_info))
        write_metrics(req.out_dir / METRICS_NAME, st.history, test_metrics, extra)
        plot_curves(req.out_dir / CURVES_NAME, st.history, best_epoch=st.best_epoch, test=test_metrics,
                    title=f"ast-train {cfg.preset}: {Path(req.manifest).parent.name or req.manifest} "
                          f"({len(manifest.labels)} labels)")
    logger.info("test top1 %s top5 %s (best epoch %d, %.1fs); wrote %s", test_metrics[0], test_metrics[1],
                st.best_epoch, st.elapsed_s, req.out_dir / WEIGHTS_NAME)
    return metrics


def run(req: TrainRequest, info: DistInfo | None = None) -> dict[str, Any]:
    """Train as ``req`` says and return the metrics (as written to ``metrics.json``).

    Raises:
        training.data.manifest.ManifestError, training.out_dir.OutputDirError, CheckpointError,
        models.WeightsError, models.hub.HubError, training.model_setup.InitError, serving.contract.AudioError,
        ConfigError: bad input, all raised before the first step. training.out_dir.OutputWriteError: a write into ``--out`` failed later (disk full).
    """
    info = info or distributed.env_info()
    manifest, ckpt = prepare(req, info)
    cfg = req.config
    device = resolve_device(cfg.device, info)
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if ckpt is None and resolve_objective(cfg.objective, manifest) == "fingerprint":  # resume: a classifier run
        from training.fp_run import run_fingerprint

        return run_fingerprint(req, manifest, info, device)
    distributed.setup(info, device)
    try:
        trainer, spec = build(req, manifest, ckpt, info, device)
        val = load_songs(manifest.split("val"), manifest.labels, spec.fbank_cfg.sample_rate)
        test = load_songs(manifest.split("test"), manifest.labels, spec.fbank_cfg.sample_rate)
        logger.info("training %s: %d labels, %d windows/epoch, %d steps/epoch, %d val / %d test songs, %s x%d",
                    cfg.preset, len(manifest.labels), len(trainer.train_set), trainer.steps_per_epoch,
                    len(val), len(test), device, info.world_size)
        for epoch in range(trainer.state.epoch, cfg.epochs):
            trainer.run_epoch(epoch, val)
            if info.is_main:
                with writing(req.out_dir / CHECKPOINT_NAME):
                    save_checkpoint(req.out_dir / CHECKPOINT_NAME, _checkpoint(req, trainer, spec))
        metrics = _finish(req, trainer, spec, manifest, val, test)
        distributed.barrier()
        return metrics
    finally:
        distributed.cleanup()

