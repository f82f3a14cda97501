"""Song-level evaluation (the shared scoring rule), ``metrics.json`` and ``curves.png``.

Scoring rule, shared with ``serving`` (every step is ``serving.contract``'s): cut each song into windows with
``song_windows`` at ``default_hop`` (half a window), score every window, turn each song's window
probabilities into its class scores with ``song_scores`` (the max over windows), and rank classes by them. A
song counts for top-k when its true label is among the k best classes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serving.contract import atomic_write, song_scores, song_windows

logger = logging.getLogger(__name__)

TOP_K = (1, 5)
METRICS_NAME = "metrics.json"
CURVES_NAME = "curves.png"


@dataclass
class SongSet:
    """Decoded songs of one split, kept in memory for repeated evaluation."""

    waves: list[np.ndarray]  # each float32 [S]
    labels: list[int]  # class index per song

    def __len__(self) -> int:
        return len(self.waves)

    def shard(self, rank: int, world_size: int) -> SongSet:
        """Songs ``rank, rank + W, ...`` (ranks evaluate disjoint songs, then sum the hit counts)."""
        return SongSet(self.waves[rank::world_size], self.labels[rank::world_size])


@dataclass
class SongHits:
    """Hit counts over a set of songs (summable across ranks)."""

    top1: int = 0
    top5: int = 0
    songs: int = 0

    def rates(self) -> tuple[float | None, float | None]:
        """(top-1, top-5) accuracy, or ``(None, None)`` when there were no songs."""
        if self.songs == 0:
            return None, None
        return self.top1 / self.songs, self.top5 / self.songs


def _window_batches(songs: SongSet, window: int, hop: int, batch_size: int
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (windows [N, S], song index per window [N]) batches spanning songs."""
    buf: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    count = 0
    for i, wave in enumerate(songs.waves):
        wins = song_windows(wave, window, hop)  # [n, S]
        buf.append(wins)
        owners.append(np.full(len(wins), i, dtype=np.int64))
        count += len(wins)
        while count >= batch_size:
            stacked, owner = np.concatenate(buf), np.concatenate(owners)
            yield stacked[:batch_size], owner[:batch_size]
            buf, owners = [stacked[batch_size:]], [owner[batch_size:]]
            count -= batch_size
    if count:
        yield np.concatenate(buf), np.concatenate(owners)


def score_songs(model: torch.nn.Module, songs: SongSet, window: int, hop: int, batch_size: int,
                device: torch.device) -> np.ndarray:
    """Per-song class scores ``[num_songs, C]``: each song's window probs, reduced by the contract's
    ``song_scores``.

    ``model`` maps waveforms ``[B, S]`` to ``(probs [B, C], embedding)`` (``models.ScoringModel``).
    """
    per_song: list[list[np.ndarray]] = [[] for _ in range(len(songs))]
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for wins, owner in _window_batches(songs, window, hop, batch_size):
            probs = model(torch.from_numpy(wins).to(device))[0].float().cpu().numpy()  # [N, C]
            for i in np.unique(owner):
                per_song[i].append(probs[owner == i])  # [n_i, C]
    model.train(was_training)
    if not len(songs):
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([song_scores(np.concatenate(parts)) for parts in per_song]).astype(np.float32)  # [N, C]


def count_hits(scores: np.ndarray, labels: Sequence[int]) -> SongHits:
    """Top-1 / top-5 hit counts of song scores ``[N, C]`` against true labels."""
    hits = SongHits(songs=len(labels))
    if not len(labels):
        return hits
    order = np.argsort(-scores, axis=1, kind="stable")  # [N, C]
    truth = np.asarray(labels)[:, None]  # [N, 1]
    hits.top1 = int((order[:, :1] == truth).any(axis=1).sum())
    hits.top5 = int((order[:, : TOP_K[1]] == truth).any(axis=1).sum())
    return hits


def write_metrics(path: Path, epochs: list[dict[str, Any]], test: tuple[float | None, float | None],
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``metrics.json`` atomically: ``{"epochs": [...], "test_top1", "test_top5", **extra}``."""
    data: dict[str, Any] = {"epochs": epochs, "test_top1": test[0], "test_top5": test[1], **(extra or {})}
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
    return data


def plot_curves(path: Path, epochs: list[dict[str, Any]], *, best_epoch: int | None = None,
                test: tuple[float | None, float | None] = (None, None), title: str = "ast-train") -> None:
    """Save train loss (left axis) and val top-1/top-5 (right axis) per epoch as a PNG.

    Args:
        path: the PNG.
        epochs: the metrics rows (``epoch``, ``train_loss``, ``val_top1``, ``val_top5``).
        best_epoch: the epoch whose weights were kept (a vertical line).
        test: the kept weights' test top-1/top-5 (horizontal lines, in the legend with their values).
        title: e.g. the preset and the catalogue.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless; must precede pyplot
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    xs = [e["epoch"] for e in epochs]
    fig, ax_loss = plt.subplots(figsize=(7, 4), dpi=100)
    ax_loss.plot(xs, [e["train_loss"] for e in epochs], "o-", color="tab:red", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("train loss")
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc = ax_loss.twinx()
    for key, style in (("val_top1", "s-"), ("val_top5", "^--")):
        ys = [np.nan if e[key] is None else e[key] for e in epochs]
        ax_acc.plot(xs, ys, style, label=key.replace("_", " "))
    for value, name, style in ((test[0], "test top1", ":"), (test[1], "test top5", "-.")):
        if value is not None:
            ax_acc.axhline(value, color="tab:green", linestyle=style, lw=1, label=f"{name} {value:.3f}")
    if best_epoch:
        ax_loss.axvline(best_epoch, color="0.4", linestyle="--", lw=1, label=f"kept: epoch {best_epoch}")
    ax_acc.set_ylabel("song-level accuracy")
    ax_acc.set_ylim(0.0, 1.02)
    lines = ax_loss.get_lines() + ax_acc.get_lines()
    ax_loss.legend(lines, [ln.get_label() for ln in lines], loc="center right", fontsize=7)
    ax_loss.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
