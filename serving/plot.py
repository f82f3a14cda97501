"""``--plot DIR``: one PNG per song, a samples x time heat map of window scores with the chosen spans marked.

matplotlib is imported lazily (Agg backend) so that ``ast-serve`` without ``--plot`` never loads it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

from serving.matches import SongResult

logger = logging.getLogger(__name__)

FIG_WIDTH_IN = 10.0
ROW_HEIGHT_IN = 0.35
MIN_HEIGHT_IN = 2.5
DPI = 100
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
NAME_HASH_CHARS = 8


def plot_name(path: str) -> str:
    """A safe, unique PNG name for an input path (stem + short hash of the full path)."""
    stem = SAFE_NAME.sub("_", Path(path).stem)[:60] or "song"
    digest = hashlib.sha1(path.encode("utf-8", "backslashreplace")).hexdigest()[:NAME_HASH_CHARS]
    return f"{stem}-{digest}.png"


def plot_song(result: SongResult, out_dir: str | os.PathLike) -> Path | None:
    """Write the heat map of ``result`` (which must carry a timeline); return the PNG path or None.

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
    from matplotlib.patches import Rectangle

    rows = len(timeline.samples)
    end = max(result.duration_s or 0.0, timeline.start_s[-1] + timeline.window_s)
    fig, ax = plt.subplots(figsize=(FIG_WIDTH_IN, max(MIN_HEIGHT_IN, 1.2 + ROW_HEIGHT_IN * rows)), dpi=DPI)
    # Each column is drawn at its window's centre; overlapping windows make centres the honest time axis.
    centres = [s + timeline.window_s / 2 for s in timeline.start_s]
    image = ax.pcolormesh(_edges(centres, end), range(rows + 1), timeline.scores, vmin=0.0, vmax=1.0,
                          cmap="magma", shading="flat")
    matched = {m.sample: m for m in result.matches}
    for row, sample in enumerate(timeline.samples):
        if sample in matched:
            m = matched[sample]
            ax.add_patch(Rectangle((m.start_s, row), m.end_s - m.start_s, 1, fill=False, edgecolor="cyan", lw=2))
    ax.set_yticks([r + 0.5 for r in range(rows)], timeline.samples)
    ax.set_xlabel("time (s)")
    ax.set_title(Path(result.path).name, fontsize=9)
    fig.colorbar(image, ax=ax, label="window score")
    fig.tight_layout()
    out = Path(out_dir) / plot_name(result.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _edges(centres: list[float], end: float) -> list[float]:
    """Cell edges around window centres, from 0 to the song's end."""
    mids = [(a + b) / 2 for a, b in zip(centres[:-1], centres[1:], strict=True)]
    return [0.0, *mids, max(end, centres[-1])]
