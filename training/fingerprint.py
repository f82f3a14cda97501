"""The contrastive fingerprint objective: NT-Xent on positive pairs plus an auxiliary cross-entropy.

Per step (:meth:`FingerprintTrainer.step`): ``pairs`` positive pairs from :class:`training.data.pairs.PairMaker`
give ``2 x pairs`` views; each view's embedding is exactly the tensor the export writes as ``embedding``
(``F.normalize(ast.fingerprint(ast.pool(tokens)))``, see ``models.scoring.ScoringModel.forward``). Loss: NT-Xent
at temperature ``tau`` (each view's positive is its partner, every other view is a negative, other windows of
the same record included) plus ``ce_weight`` x the cross-entropy of the record's label on both views' logits
(records without a train label are ignored there), so the exported ``probs`` stays a working classifier.

Schedule: linear warm-up over :data:`WARMUP_STEPS`, then a cosine over the *time* budget (progress = elapsed /
budget), so a shared CPU shortens the run instead of stretching it. Every ``fp_check_every`` steps the held-out
pair accuracy (:func:`pair_accuracy`) is measured; two consecutive checks at :data:`CONVERGED_ACCURACY` or more
stop the run early. The forward runs under bf16 autocast on CUDA and on CPUs with native bf16
(:func:`use_bf16`); the loss is computed in float32.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import ScoringModel
from training.config import TrainConfig, peak_lr
from training.data.pairs import PairMaker
from training.errors import ConfigError
from training.loop import param_groups

logger = logging.getLogger(__name__)

WARMUP_STEPS = 100
CONVERGED_ACCURACY = 0.98
CONVERGED_CHECKS = 2  # consecutive checks at CONVERGED_ACCURACY or more
BUDGET_PER_AUDIO_MIN = 0.7  # training minutes per minute of catalogue audio
BUDGET_RANGE_MIN = (5.0, 55.0)
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
EVAL_BATCH = 64
NEG_INF = -1e9


def nt_xent(z: torch.Tensor, tau: float) -> torch.Tensor:
    """NT-Xent over ``z [2n, E]`` (L2-normalised; view ``i`` and ``i + n`` are a pair)."""
    n = z.shape[0] // 2
    sim = z @ z.T / tau  # [2n, 2n]
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), NEG_INF)  # [2n, 2n]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)  # [2n]
    return F.cross_entropy(sim, target)


def fingerprint_loss(z: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, tau: float,
                     ce_weight: float) -> torch.Tensor:
    """NT-Xent of ``z [2n, E]`` + ``ce_weight`` x CE of ``logits [2n, C]`` against ``labels [n]`` (-1 ignored)."""
    loss = nt_xent(z.float(), tau)
    both = torch.cat([labels, labels])  # [2n]
    if ce_weight > 0 and bool((both >= 0).any()):
        loss = loss + ce_weight * F.cross_entropy(logits.float(), both, ignore_index=-1)
    return loss


def embed(model: ScoringModel, wave: torch.Tensor, bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The exported ``embedding`` ``[B, E]`` (L2-normalised) and the classifier logits ``[B, C]`` of ``wave [B, S]``.

    The frontend runs in float32 (it has no weights); with ``bf16`` the AST runs under bf16 autocast.
    """
    with torch.no_grad():
        feats = model.features(wave)  # [B, T, M]
    with torch.autocast(wave.device.type, dtype=torch.bfloat16, enabled=bf16):
        pooled = model.ast.pool(model.ast.forward_features(feats))  # [B, D]
        fp, logits = model.ast.fingerprint(pooled), model.ast.classify(pooled)  # [B, E], [B, C]
    return F.normalize(fp.float(), dim=-1), logits.float()  # [B, E], [B, C]


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU flags name native bf16 (``avx512_bf16`` or ``amx_bf16``)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(f in flags for f in CPU_BF16_FLAGS)


def use_bf16(amp: str, device: torch.device) -> bool:
    """bf16 autocast for the forward? ``auto``: on CUDA, and on CPUs with native bf16 (one log line)."""
    if amp == "off":
        choice, why = False, "--amp off"
    elif amp == "bf16":
        choice, why = True, "--amp bf16"
    elif device.type == "cuda":
        choice, why = True, "CUDA"
    else:
        choice = cpu_has_bf16()
        why = "the CPU has native bf16" if choice else "the CPU has no avx512_bf16/amx_bf16"
    logger.info("fingerprint forward in %s (%s)", "bf16 autocast" if choice else "fp32", why)
    return choice


def budget_seconds(cfg: TrainConfig, audio_s: float) -> float:
    """``budget_minutes``, or ``clamp(0.7 x catalogue audio minutes, 5, 55)`` minutes when it is 0, in seconds.

    The work scales with the material to learn: the demo's 24 records of ~10 s (4 min of audio) get the
    5-minute floor, ``dev-plus``'s 60 full records (83 min) the 55-minute cap that fits 60 minutes on 2 cores.
    """
    if cfg.budget_minutes > 0:
        return cfg.budget_minutes * 60.0
    lo, hi = BUDGET_RANGE_MIN
    return min(max(BUDGET_PER_AUDIO_MIN * audio_s / 60.0, lo), hi) * 60.0


def time_lr(base: float, step: int, progress: float, floor: float) -> float:
    """Warm-up over :data:`WARMUP_STEPS` steps times a cosine from 1 to ``floor`` over ``progress`` in [0, 1]."""
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    return base * warm * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def check_objective(objective: str, world_size: int, resume: bool) -> None:
    """Refuse what the fingerprint objective does not support, in one line.

    Raises:
        ConfigError: DDP (world size > 1) or ``--resume``.
    """
    if world_size > 1:
        raise ConfigError(f"objective {objective!r} runs on one process; run without torchrun or use "
                          "--objective classify")
    if resume:
        raise ConfigError(f"objective {objective!r} does not resume (its schedule is a time budget); "
                          "train into a new --out")


@torch.no_grad()
def pair_accuracy(model: ScoringModel, anchors: torch.Tensor, positives: torch.Tensor, device: torch.device,
                  bf16: bool = False) -> float:
    """Share of positives ``[N, S]`` whose nearest anchor ``[N, S]`` (cosine) is their own (eval mode)."""
    was_training = model.training
    model.eval()
    views = []
    for part in (anchors, positives):
        chunks = []
        for i in range(0, len(part), EVAL_BATCH):
            chunks.append(embed(model, part[i:i + EVAL_BATCH].to(device), bf16)[0])  # [b, E]
        views.append(torch.cat(chunks))  # [N, E]
    model.train(was_training)
    nearest = (views[1] @ views[0].T).argmax(dim=1)  # [N]
    return float((nearest == torch.arange(len(nearest), device=nearest.device)).float().mean())


@dataclass
class FingerprintResult:
    """What a fingerprint run did (metrics.json)."""

    steps: int = 0
    train_time_s: float = 0.0
    budget_s: float = 0.0
    stop_reason: str = "budget"  # budget | converged
    bf16: bool = False
    checks: list[dict[str, Any]] = field(default_factory=list)  # {step, loss, heldout_acc, lr, elapsed_s}

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "train_time_s": round(self.train_time_s, 3), "budget_s": round(self.budget_s, 1),
                "stop_reason": self.stop_reason, "bf16": self.bf16, "heldout_curve": self.checks}


class FingerprintTrainer:
    """AdamW on the AST (the loop's param groups), clipped steps, the time schedule and the early stop."""

    def __init__(self, cfg: TrainConfig, model: ScoringModel, pairs: PairMaker, heldout: tuple[torch.Tensor,
                 torch.Tensor], device: torch.device, budget_s: float) -> None:
        self.cfg, self.model, self.pairs, self.device = cfg, model, pairs, device
        self.heldout, self.budget_s = heldout, budget_s
        self.labels = torch.as_tensor(pairs.audio.labels, dtype=torch.long)  # record -> class (-1 none)
        self.max_lr = peak_lr(cfg, "fingerprint")
        self.optimizer = torch.optim.AdamW(param_groups(model.ast, cfg.weight_decay), lr=self.max_lr, betas=cfg.betas)
        self.bf16 = use_bf16(cfg.amp, device)
        self.rng = np.random.default_rng(cfg.seed)

    def step(self, lr: float) -> float:
        """One optimizer step on ``pairs`` fresh pairs at learning rate ``lr``; returns the loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        anchors, positives, records = self.pairs.batch(self.rng, self.cfg.pairs)
        wave = torch.from_numpy(np.concatenate([anchors, positives])).to(self.device)  # [2n, S]
        labels = self.labels[torch.from_numpy(records)].to(self.device)  # [n]
        self.model.train()
        z, logits = embed(self.model, wave, self.bf16)  # [2n, E], [2n, C]
        loss = fingerprint_loss(z, logits, labels, self.cfg.tau, self.cfg.ce_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.ast.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        return float(loss.detach())

    def train(self) -> FingerprintResult:
        """Steps until the time budget is spent or the held-out accuracy converged."""
        cfg, res = self.cfg, FingerprintResult(budget_s=self.budget_s, bf16=self.bf16)
        start, losses, good = time.perf_counter(), [], 0
        while (elapsed := time.perf_counter() - start) < self.budget_s:
            lr = time_lr(self.max_lr, res.steps, elapsed / self.budget_s, cfg.min_lr_ratio)
            losses.append(self.step(lr))
            res.steps += 1
            if res.steps % cfg.fp_check_every == 0:
                good = good + 1 if self._check(res, losses, lr, start) >= CONVERGED_ACCURACY else 0
                losses = []
                if good >= CONVERGED_CHECKS:
                    res.stop_reason = "converged"
                    break
        res.train_time_s = time.perf_counter() - start
        logger.info("fingerprint: %d steps in %.1fs, stopped by %s", res.steps, res.train_time_s, res.stop_reason)
        return res

    def _check(self, res: FingerprintResult, losses: list[float], lr: float, start: float) -> float:
        acc = pair_accuracy(self.model, *self.heldout, self.device, self.bf16)
        row = {"step": res.steps, "loss": round(float(np.mean(losses)), 4), "heldout_acc": round(acc, 4),
               "lr": lr, "elapsed_s": round(time.perf_counter() - start, 1)}
        res.checks.append(row)
        logger.info("step %d  loss %.4f  held-out pair acc %.3f  lr %.2e  %.0fs", row["step"], row["loss"], acc,
                    lr, row["elapsed_s"])
        return acc
