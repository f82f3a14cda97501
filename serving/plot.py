"""``--plot DIR``: one PNG per song: the waveform on top, below it a samples x time heat map of window scores
with every occurrence of each match boxed.

Layout rules (one time axis for everything):

- A heat-map column is one window, drawn as the cell around the window's **centre** (windows overlap, so their
  centres are the honest place for a window's score); cell edges are the midpoints between centres, from 0
  to the song's end.
- A span box is drawn on **cell edges**: from the left edge of its first window's cell to the right edge of
  its last window's cell, so boxes line up with the cells they cover. The best occurrence is solid, the
  others dashed (the legend says which).
- Rows are the timeline's samples, rank 1 at the top, each labelled with its song score.
- The waveform strip (min/max envelope, re-decoded from the song's path) shares the time axis; when the file
  cannot be decoded again the strip is left out.
- The PNG is named from the **resolved** path (``a.flac`` and ``./a.flac`` are one file, one PNG), and
  :func:`plot_song` returns its path (``identify`` puts it in the result's ``plot`` field).

matplotlib is imported lazily (Agg backend) so that ``ast-serve`` without ``--plot`` never loads it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from serving.contract import AudioError, load_audio
from serving.matches import Match, SongResult, Timeline

logger = logging.getLogger(__name__)

FIG_WIDTH_IN = 10.0
ROW_HEIGHT_IN = 0.35
WAVE_HEIGHT_IN = 1.2
MIN_MAP_HEIGHT_IN = 1.6
DPI = 100
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
NAME_HASH_CHARS = 8
ENVELOPE_POINTS = 2000  # min/max pairs drawn for the waveform strip (about two per pixel column)
PLOT_RATE = 16000  # the waveform strip's decode rate (the shape, not the model's input)
EPS_S = 1e-6
BEST_STYLE = {"edgecolor": "cyan", "lw": 2.0, "linestyle": "-"}
OTHER_STYLE = {"edgecolor": "cyan", "lw": 1.2, "linestyle": "--"}


def plot_name(path: str) -> str:
    """A safe, unique PNG name for an input path: its stem + a short hash of the **resolved** path."""
    stem = SAFE_NAME.sub("_", Path(path).stem)[:60] or "song"
    resolved = os.path.realpath(path)
    digest = hashlib.sha1(resolved.encode("utf-8", "backslashreplace")).hexdigest()[:NAME_HASH_CHARS]
    return f"{stem}-{digest}.png"


def cell_edges(centres: list[float], end: float) -> list[float]:
    """Cell edges around window centres, from 0 to the song's end (``len(centres) + 1`` values)."""
    mids = [(a + b) / 2 for a, b in zip(centres[:-1], centres[1:], strict=True)]
    return [0.0, *mids, max(end, centres[-1])]


def span_cells(starts: list[float], window_s: float, span: dict[str, float]) -> tuple[int, int]:
    """First and last window index of a ``{start_s, end_s}`` span (its windows start in it and end by its end;
    the last one may be clipped to the song)."""
    arr = np.asarray(starts)  # [N]
    first = min(int(np.searchsorted(arr, span["start_s"] - EPS_S)), arr.size - 1)
    fits = np.flatnonzero((arr >= span["start_s"] - EPS_S) & (arr + window_s <= span["end_s"] + EPS_S))  # [k]
    return first, max(first, int(fits[-1]) if fits.size else first)


def _envelope(path: str, end: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(times, min, max) of the song's waveform, or None when it cannot be decoded again."""
    try:
        wave = load_audio(path, PLOT_RATE)  # [S]
    except (AudioError, OSError, ValueError) as err:
        logger.debug("%s: no waveform strip (%s)", path, err)
        return None
    if wave.size == 0:
        return None
    chunks = np.array_split(wave, min(ENVELOPE_POINTS, wave.size))
    times = np.linspace(0.0, min(end, wave.size / PLOT_RATE), len(chunks))
    return times, np.array([c.min() for c in chunks]), np.array([c.max() for c in chunks])


def _draw_boxes(ax: Any, timeline: Timeline, edges: list[float], matches: dict[str, Match]) -> None:
    from matplotlib.patches import Rectangle

    for row, sample in enumerate(timeline.samples):
        m = matches.get(sample)
        if m is None:
            continue
        best = {"start_s": m.start_s, "end_s": m.end_s}
        for span in m.spans or [best]:
            first, last = span_cells(timeline.start_s, timeline.window_s, span)
            is_best = abs(span["start_s"] - m.start_s) < EPS_S and abs(span["end_s"] - m.end_s) < EPS_S
            style = BEST_STYLE if is_best or not m.spans else OTHER_STYLE
            ax.add_patch(Rectangle((edges[first], row), edges[last + 1] - edges[first], 1, fill=False, **style))


def _legend(ax: Any) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=BEST_STYLE["edgecolor"], lw=BEST_STYLE["lw"], label="best occurrence"),
               Line2D([], [], color=OTHER_STYLE["edgecolor"], lw=OTHER_STYLE["lw"], linestyle="--",
                      label="other occurrences")]
    ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.6)


def _row_labels(timeline: Timeline, matches: dict[str, Match]) -> list[str]:
    """``sample  score`` per row: the match's song score, or the row's best window score (not a match)."""
    labels = []
    for sample, scores in zip(timeline.samples, timeline.scores, strict=True):
        m = matches.get(sample)
        labels.append(f"{sample}  {m.score:.2f}" if m is not None else f"{sample}  ({max(scores):.2f})")
    return labels


def plot_song(result: SongResult, out_dir: str | os.PathLike) -> Path | None:
    """Write the figure of ``result`` (which must carry a timeline); return the PNG path or None.

    Args:
        result: a scored song with ``timeline`` filled.
        out_dir: folder for the PNG (created if missing).
    """
    timeline = result.timeline
    if result.error is not None or timeline is None or not timeline.start_s:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(timeline.samples)
    end = max(result.duration_s or 0.0, timeline.start_s[-1] + timeline.window_s)
    envelope = _envelope(result.path, end)
    map_h = max(MIN_MAP_HEIGHT_IN, 0.8 + ROW_HEIGHT_IN * rows)
    fig, axes = plt.subplots(2 if envelope else 1, 1, sharex=True, squeeze=False, dpi=DPI, layout="constrained",
                             figsize=(FIG_WIDTH_IN, map_h + (WAVE_HEIGHT_IN if envelope else 0.0) + 0.6),
                             gridspec_kw={"height_ratios": [WAVE_HEIGHT_IN, map_h] if envelope else [map_h]})
    if envelope:
        times, low, high = envelope
        axes[0, 0].fill_between(times, low, high, color="0.3", lw=0)
        axes[0, 0].set_ylim(-1.0, 1.0)
        axes[0, 0].set_ylabel("wave", fontsize=8)
    ax = axes[-1, 0]
    edges = cell_edges([s + timeline.window_s / 2 for s in timeline.start_s], end)
    image = ax.pcolormesh(edges, range(rows + 1), timeline.scores, vmin=0.0, vmax=1.0, cmap="magma",
                          shading="flat")
    matches = {m.sample: m for m in result.matches}
    _draw_boxes(ax, timeline, edges, matches)
    if matches:
        _legend(ax)
    ax.set_yticks([r + 0.5 for r in range(rows)], _row_labels(timeline, matches), fontsize=8)
    ax.set_ylim(rows, 0)  # rank 1 at the top
    ax.set_xlim(0.0, end)
    ax.set_xlabel(f"time (s); a cell is one {timeline.window_s:g} s window, drawn around its centre")
    axes[0, 0].set_title(Path(result.path).name, fontsize=9)
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="window score")
    out = Path(out_dir) / plot_name(result.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
