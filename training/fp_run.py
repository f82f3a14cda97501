"""``ast-train`` with the fingerprint objective, end to end (``training.train.run`` hands over here).

The model is the preset's (or the ``--init-from`` file's) with ``ASTConfig.fp_dim = fp_dim`` and
``target_frames = fp_frames``. Pairs come from the manifest's records and its labelled train songs
(``training.data.pairs``); the held-out pairs of the early stop are :data:`HELDOUT_SEED`-seeded record pairs, drawn
once. The fbank norm stats are estimated on those windows (anchors and positives). After the run: song-level
val/test top-1/top-5 of the classifier head and its calibrated "no match" threshold (as the classifier run), then
``modelo_audio.pth`` (a normal project weights file, ``model_setup.weights_file``), ``metrics.json`` and
``curves.png`` (held-out pair accuracy per check on the accuracy axis).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import save_weights, window_samples
from serving.contract import default_hop
from training.config import TrainConfig
from training.data.manifest import Manifest
from training.data.pairs import PairMaker, load_catalogue
from training.distributed import DistInfo
from training.errors import ConfigError
from training.fingerprint import FingerprintTrainer, budget_seconds, check_objective
from training.metrics import (
    CURVES_NAME,
    METRICS_NAME,
    SongSet,
    count_hits,
    plot_curves,
    score_songs,
    write_metrics,
)
from training.model_setup import (
    ModelSpec,
    data_fingerprint,
    estimate_norm,
    fresh_spec,
    init_spec,
    software_versions,
    weights_file,
)
from training.out_dir import check_free_space, writing
from training.train import WEIGHTS_NAME, TrainRequest, calibrate_threshold, load_songs, seed_everything

logger = logging.getLogger(__name__)

OBJECTIVE = "fingerprint"
HELDOUT_SEED = 0x48E1D  # added to --seed: the held-out pairs never repeat training draws


def fingerprint_spec(cfg: TrainConfig, manifest: Manifest, init_from: str | None, preset_given: bool,
                     init_sha256: str | None) -> ModelSpec:
    """The preset's (or init file's) model with the fingerprint head and ``fp_frames`` windows."""
    overrides = {**cfg.model_overrides, "fp_dim": cfg.fp_dim, "target_frames": cfg.fp_frames}
    if init_from:
        return init_spec(init_from, cfg.preset if preset_given else None, manifest.labels, overrides, init_sha256)
    return fresh_spec(cfg.preset, manifest.labels, overrides)


def _heldout(pairs: PairMaker, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``fp_heldout`` fixed record pairs (anchors ``[N, S]``, positives ``[N, S]``), from their own seed."""
    song_prob = pairs.song_prob
    pairs.song_prob = 0.0  # anchors and positives from the records
    anchors, positives, _ = pairs.batch(np.random.default_rng(cfg.seed + HELDOUT_SEED), cfg.fp_heldout)
    pairs.song_prob = song_prob
    return torch.from_numpy(anchors), torch.from_numpy(positives)


def _song_rates(model: torch.nn.Module, songs: SongSet, cfg: TrainConfig,
                device: torch.device) -> tuple[float | None, float | None]:
    """Song-level (top-1, top-5) of the classifier head, windows and hop as ``ast-serve`` places them."""
    if not len(songs):
        return None, None
    window = model.window_samples
    model.eval()
    scores = score_songs(model, songs, window, default_hop(window), cfg.eval_batch_size, device)
    return count_hits(scores, songs.labels).rates()


def run_fingerprint(req: TrainRequest, manifest: Manifest, info: DistInfo, device: torch.device) -> dict[str, Any]:
    """Train the fingerprint objective as ``req`` says; returns the metrics (as written to ``metrics.json``).

    Raises:
        ConfigError: DDP, ``--resume`` or no records; plus everything ``training.train.run`` documents.
    """
    cfg = req.config
    check_objective(OBJECTIVE, info.world_size, req.resume)
    if not manifest.records:
        raise ConfigError("objective 'fingerprint' needs records: add records.csv (sample,record_path) beside "
                          "the manifest, or use --objective classify")
    seed_everything(cfg.seed)
    spec = fingerprint_spec(cfg, manifest, req.init_from, req.preset_given, req.init_sha256)
    check_free_space(req.out_dir, spec.ast_cfg)
    window = window_samples(spec.fbank_cfg, spec.ast_cfg)
    pairs = PairMaker(load_catalogue(manifest, spec.fbank_cfg.sample_rate), window, np.random.default_rng(cfg.seed))
    heldout = _heldout(pairs, cfg)
    if spec.norm is None:
        views = [(w, 0) for pair in zip(*heldout, strict=True) for w in pair]
        spec.norm = estimate_norm(spec.fbank_cfg, views, cfg.norm_windows)
        logger.info("fbank norm stats from %d pair windows: mean %.4f std %.4f", min(cfg.norm_windows, len(views)),
                    *spec.norm)
    model = spec.build().to(device)
    budget = budget_seconds(cfg, pairs.audio.seconds(spec.fbank_cfg.sample_rate))
    logger.info("training %s fingerprint: %d records, %d labels, %d pairs/step, window %d, budget %.1f min, %s",
                cfg.preset, len(pairs.audio), len(manifest.labels), cfg.pairs, window, budget / 60, device)
    result = FingerprintTrainer(cfg, model, pairs, heldout, device, budget).train()
    val = load_songs(manifest.split("val"), manifest.labels, spec.fbank_cfg.sample_rate)
    test = load_songs(manifest.split("test"), manifest.labels, spec.fbank_cfg.sample_rate)
    rates = {"val": _song_rates(model, val, cfg, device), "test": _song_rates(model, test, cfg, device)}
    return _write(req, spec, model, manifest, result.to_dict(), rates, val, device)


def _write(req: TrainRequest, spec: ModelSpec, model: torch.nn.Module, manifest: Manifest, fp: dict[str, Any],
           rates: dict[str, tuple[float | None, float | None]], val: SongSet, device: torch.device) -> dict[str, Any]:
    """Calibrate, then write the weights file, metrics.json and curves.png; returns the metrics."""
    cfg = req.config
    test = rates["test"]
    extra: dict[str, Any] = {"objective": OBJECTIVE, "fingerprint": fp, "val_top1": rates["val"][0],
                             "val_top5": rates["val"][1], "best_epoch": None, "train_time_s": fp["train_time_s"],
                             "world_size": 1, "device": device.type}
    train_info: dict[str, Any] = {"data_fingerprint": data_fingerprint(req.manifest, manifest),
                                  "versions": software_versions(), "config": cfg.to_dict(),
                                  "train_time_s": fp["train_time_s"], "init_from": spec.init_from,
                                  "manifest": str(req.manifest), "objective": OBJECTIVE}
    if len(val):
        cal = calibrate_threshold(cfg, model, device, spec, manifest, val)
        extra["calibration"] = cal.to_dict()
        train_info.update(threshold=cal.threshold, threshold_far=cal.far, calibration=cal.to_dict())
    metrics = {"epochs": [], "test_top1": test[0], "test_top5": test[1], **extra}
    train_info["metrics"] = metrics
    rows = [{"epoch": c["step"], "train_loss": c["loss"], "val_top1": c["heldout_acc"], "val_top5": None}
            for c in fp["heldout_curve"]]
    with writing(req.out_dir):
        save_weights(req.out_dir / WEIGHTS_NAME, weights_file(spec, model.ast.state_dict(), train_info))
        write_metrics(req.out_dir / METRICS_NAME, [], test, extra)
        plot_curves(req.out_dir / CURVES_NAME, rows, test=test,
                    title=f"ast-train {cfg.preset} fingerprint: {Path(req.manifest).parent.name} "
                          f"(x: step, acc: held-out pairs)")
    logger.info("fingerprint run: %d steps (%s), test top1 %s; wrote %s", fp["steps"], fp["stop_reason"], test[0],
                req.out_dir / WEIGHTS_NAME)
    return metrics
