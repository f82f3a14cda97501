"""The training loop proper: optimizer, schedule, one epoch of steps, song-level validation, checkpoint state.

Reads top to bottom like nanoGPT's ``train.py``: per batch, ``model.features(wave)`` (frontend + norm, no
gradients: the frontend has no weights), SpecAugment on the normalised fbank, ``ast(feats)``, label-smoothed
cross-entropy (a flat target for background windows), clipped AdamW step, LambdaLR step (linear warm-up then
cosine). Under DDP only the AST is wrapped (the frontend is parameter-free), so gradients are averaged
across ranks in ``backward``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio.transforms as T
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from models import ScoringModel
from serving.contract import default_hop, show_progress
from training import distributed
from training.checkpoint import Checkpoint, capture_rng, restore_rng
from training.config import TrainConfig, peak_lr
from training.distributed import DistInfo
from training.ema import WeightEMA
from training.metrics import SongHits, SongSet, count_hits, score_songs

logger = logging.getLogger(__name__)

NO_DECAY_NAMES = ("cls_token", "dist_token", "pos_embed")


def cosine_lambda(total_steps: int, warmup_steps: int, floor: float) -> Callable[[int], float]:
    """LR multiplier: linear warm-up from ~0 to 1, then cosine decay from 1 to ``floor``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on matrices, none on biases, norms, tokens and position embeddings (ViT recipe)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in NO_DECAY_NAMES else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class SpecAugment(nn.Module):
    """Frequency and time masking on a normalised fbank ``[B, T, M]`` (mask value 0 = the data mean)."""

    def __init__(self, freq_mask: int, time_mask: int, num_masks: int) -> None:
        super().__init__()
        masks: list[nn.Module] = []
        for _ in range(num_masks):
            if freq_mask > 0:
                masks.append(T.FrequencyMasking(freq_mask, iid_masks=True))
            if time_mask > 0:
                masks.append(T.TimeMasking(time_mask, iid_masks=True))
        self.masks = nn.Sequential(*masks)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = feats.transpose(1, 2)  # [B, M, T]: torchaudio's (..., freq, time)
        return self.masks(x).transpose(1, 2)  # [B, T, M]


@dataclass
class LoopState:
    """Progress that a checkpoint must carry for an exact resume."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps taken
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.json "epochs" rows
    epoch_seconds: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_key: tuple[float, float] = (-1.0, -1.0)
    best_state: dict[str, torch.Tensor] | None = None
    elapsed_s: float = 0.0  # training wall time so far (summed over resumed runs)


class Trainer:
    """Owns model, optimizer, scheduler and data loader; runs epochs and evaluations."""

    def __init__(self, cfg: TrainConfig, model: ScoringModel, train_set: Dataset, info: DistInfo,
                 device: torch.device) -> None:
        self.cfg, self.model, self.train_set, self.info, self.device = cfg, model, train_set, info, device
        self.ast: nn.Module = model.ast
        if info.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.ast = nn.parallel.DistributedDataParallel(model.ast, device_ids=ids)
        self.augment = SpecAugment(cfg.freq_mask, cfg.time_mask, cfg.num_masks)
        self.optimizer = torch.optim.AdamW(param_groups(model.ast, cfg.weight_decay), lr=peak_lr(cfg, "classify"),
                                           betas=cfg.betas)
        total = self.steps_per_epoch * cfg.epochs
        warmup = max(1, round(cfg.warmup_frac * total))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, cosine_lambda(total, warmup, cfg.min_lr_ratio))
        self.ema = WeightEMA(model.ast, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.state = LoopState()

    @property
    def steps_per_epoch(self) -> int:
        per_rank = -(-len(self.train_set) // self.info.world_size)  # ceil, as distributed.shard_indices
        return -(-per_rank // self.cfg.batch_size)

    def _loader(self, epoch: int) -> DataLoader:
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        indices = distributed.shard_indices(len(self.train_set), self.info, self.cfg.seed, epoch)
        return DataLoader(self.train_set, batch_size=self.cfg.batch_size, sampler=indices,
                          num_workers=self.cfg.workers, pin_memory=self.device.type == "cuda",
                          drop_last=False)

    def _step(self, wave: torch.Tensor, label: torch.Tensor) -> float:
        wave = wave.to(self.device, non_blocking=True)  # [B, S]
        label = label.to(self.device, non_blocking=True)  # [B]
        with torch.no_grad():
            feats = self.augment(self.model.features(wave))  # [B, T, M]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            logits = self.ast(feats)  # [B, C]
        loss = window_loss(logits.float(), label, self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.ast.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model.ast)
        self.state.step += 1
        return float(loss.detach())

    def train_epoch(self, epoch: int) -> float:
        """One pass over this rank's share of the epoch's windows; returns the mean loss over all ranks."""
        self.model.train()
        loader = self._loader(epoch)
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{self.cfg.epochs}", unit="batch", leave=False,
                   disable=not (self.info.is_main and show_progress(logger)), dynamic_ncols=True)
        for wave, label in bar:
            loss = self._step(wave, label)
            total, count = total + loss * len(label), count + len(label)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
        total, count = distributed.all_reduce_sum([total, count], self.device)
        return total / max(count, 1)

    def evaluate(self, songs: SongSet) -> tuple[float | None, float | None]:
        """Song-level (top-1, top-5) over ``songs``; each rank scores its shard, hit counts are summed."""
        shard = songs.shard(self.info.rank, self.info.world_size)
        window = self.model.window_samples
        hits = SongHits()
        if len(shard):  # windows and hop as ast-serve places them
            scores = score_songs(self.model, shard, window, default_hop(window), self.cfg.eval_batch_size,
                                 self.device)
            hits = count_hits(scores, shard.labels)
        top1, top5, n = distributed.all_reduce_sum([hits.top1, hits.top5, hits.songs], self.device)
        return SongHits(int(top1), int(top5), int(n)).rates()

    def run_epoch(self, epoch: int, val: SongSet) -> dict[str, Any]:
        """Train one epoch, validate, update the best model; returns the metrics row."""
        start = time.perf_counter()
        loss = self.train_epoch(epoch)
        with self.eval_weights():  # the averaged weights are validated, and kept when best
            top1, top5 = self.evaluate(val)
            key = (top1 if top1 is not None else -1.0, top5 if top5 is not None else -1.0)
            best = key >= self.state.best_key  # ties go to the later (longer-trained) epoch
            if best:
                self.state.best_state = {k: v.detach().clone() for k, v in self.model.ast.state_dict().items()}
        seconds = time.perf_counter() - start
        row = {"epoch": epoch + 1, "train_loss": loss, "val_top1": top1, "val_top5": top5}
        st = self.state
        st.epoch, st.elapsed_s = epoch + 1, st.elapsed_s + seconds
        st.history.append(row)
        st.epoch_seconds.append(seconds)
        if best:
            st.best_key, st.best_epoch = key, epoch + 1
        logger.info("epoch %d/%d  loss %.4f  val top1 %s  top5 %s  lr %.2e  %.1fs", epoch + 1, self.cfg.epochs,
                    loss, _fmt(top1), _fmt(top5), self.scheduler.get_last_lr()[0], seconds)
        return row

    def eval_weights(self) -> contextlib.AbstractContextManager[None]:
        """The weights that are validated and kept: the moving average when ``ema_decay > 0``."""
        return self.ema.applied(self.model.ast) if self.ema is not None else contextlib.nullcontext()

    def checkpoint_state(self) -> dict[str, Any]:
        """The loop's :class:`~training.checkpoint.Checkpoint` fields (the caller adds configs, labels, norm)."""
        st = self.state
        return {"model": self.model.ast.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "epoch": st.epoch, "step": st.step,
                "rng": capture_rng(), "history": st.history, "epoch_seconds": st.epoch_seconds,
                "best_epoch": st.best_epoch, "best_key": st.best_key, "best_state": st.best_state,
                "elapsed_s": st.elapsed_s, "ema": self.ema.state_dict() if self.ema is not None else None}

    def load_checkpoint_state(self, ckpt: Checkpoint) -> None:
        """Inverse of :meth:`checkpoint_state`; restores RNG last so the next draw matches the original run."""
        self.model.ast.load_state_dict(ckpt.model)
        self.optimizer.load_state_dict(ckpt.optimizer)
        self.scheduler.load_state_dict(ckpt.scheduler)
        self._sync_lr()
        self.state = LoopState(epoch=ckpt.epoch, step=ckpt.step, history=list(ckpt.history),
                               epoch_seconds=list(ckpt.epoch_seconds), best_epoch=ckpt.best_epoch,
                               best_key=tuple(ckpt.best_key), best_state=ckpt.best_state,
                               elapsed_s=ckpt.elapsed_s)
        if self.ema is not None and ckpt.ema is not None:
            self.ema.load_state_dict(ckpt.ema)
        restore_rng(ckpt.rng)

    def _sync_lr(self) -> None:
        """Set each group's lr from this run's schedule at the restored step.

        The restored optimizer holds the lr of the schedule it was saved under, but the schedule itself is
        rebuilt from this run's config (LambdaLR does not save plain functions): after ``--epochs`` changed on
        resume, the cosine spans the new total, and the next step must use it too. Same total: same value.
        """
        sched = self.scheduler
        lrs = [base * fn(sched.last_epoch) for fn, base in zip(sched.lr_lambdas, sched.base_lrs, strict=True)]
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr


def window_loss(logits: torch.Tensor, label: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Mean loss over a batch: label-smoothed cross-entropy for windows with a sample, and cross-entropy
    against the flat distribution for background windows (label ``< 0``, see ``training.data.dataset``)."""
    known = label >= 0  # [B]
    total = logits.new_zeros(())
    if known.any():
        total = total + F.cross_entropy(logits[known], label[known], label_smoothing=label_smoothing,
                                        reduction="sum")
    if not known.all():
        total = total - F.log_softmax(logits[~known], dim=1).mean(dim=1).sum()  # CE vs uniform
    return total / len(label)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
