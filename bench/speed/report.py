"""Report writers: JSON (everything), a markdown table (also printed to stdout) and a PNG bar chart."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHART_DPI = 80
AGREE_LABELS = {"reference": "ref", "peer": "n/a (own weights)"}


@dataclass
class VariantRow:
    """One variant of one config, as measured (or why not)."""

    config: str
    variant: str
    device: str
    status: str  # "ok", "unmeasured: no GPU", "failed: ...", "skipped: ..."
    batches: dict[int, dict[str, Any]] = field(default_factory=dict)  # batch -> BatchTiming.to_dict
    top1_agreement: float | None = None  # vs our eager fp32, same clips
    agreement_clips: int = 0
    probs_max_abs: float | None = None  # vs our eager fp32, same clips
    embedding_rel_err: float | None = None  # mean |e - e_ref| / between-clip spread (timing.embedding_error)
    notes: str = ""
    role: str = ""  # "reference" (our eager fp32), "peer" or ""

    def clips_per_s(self, batch: int) -> float | None:
        entry = self.batches.get(batch) or {}
        return entry.get("clips_per_s")


@dataclass
class Report:
    """A whole run: environment, rows, extra sections (profiling, serve bench, experiments)."""

    date: str
    device: str
    env: dict[str, Any]
    settings: dict[str, Any]
    rows: list[VariantRow]
    peer_name: str
    sections: dict[str, Any] = field(default_factory=dict)

    def peer(self, config: str) -> VariantRow | None:
        for row in self.rows:
            if row.config == config and row.variant == self.peer_name and row.status == "ok":
                return row
        return None

    def ratio(self, row: VariantRow, batch: int) -> float | None:
        peer = self.peer(row.config)
        ours, theirs = row.clips_per_s(batch), peer.clips_per_s(batch) if peer else None
        return ours / theirs if ours and theirs else None


def _fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:{spec}}{unit}"


def _md_row(cells: list[str]) -> str:
    """One markdown table row; a ``|`` inside a cell (``max |Δp|``, an error message) is escaped as ``\\|``."""
    return "| " + " | ".join(cell.replace("|", r"\|") for cell in cells) + " |"


def _best(row: VariantRow) -> dict[str, Any]:
    measured = [b for b in row.batches.values() if "clips_per_s" in b]
    return max(measured, key=lambda b: b["clips_per_s"]) if measured else {}


def _cell(report: Report, row: VariantRow, batch: int) -> str:
    entry = row.batches.get(batch)
    if not entry:
        return "–"
    if "clips_per_s" not in entry:
        return "skipped"
    ratio = report.ratio(row, batch)
    cps = entry["clips_per_s"]
    return f"{cps:.3g} ({ratio:.2f}×)" if ratio else f"{cps:.3g}"


def markdown(report: Report) -> str:
    """The results table(s), one per config, plus the run's hardware line."""
    batches = report.settings["batches"]
    env = report.env
    lines = [
        f"### Benchmark {report.date} — {report.device}",
        "",
        f"{env.get('cpu_model', '?')} (family/model {env.get('cpu_family_model', '?')}), "
        f"{env.get('cores', '?')} cores, {env.get('threads', '?')} threads used; "
        f"ISA flags: {' '.join(env.get('isa', [])) or '?'}; "
        f"torch {env.get('torch', '?')}, onnxruntime {env.get('onnxruntime', '?')}, "
        f"openvino {env.get('openvino', '?')}, "
        f"transformers {env.get('transformers', '?')}. Every figure includes the Kaldi frontend "
        "(input: raw waveform windows). Cells: clips/s (ratio to the peer at the same batch). "
        "Agreement: top-1 vs our eager fp32 on the same music-like clips.",
    ]
    lines += [f"\n_Note: {note}_" for note in report.settings.get("notes", [])]
    for config in dict.fromkeys(r.config for r in report.rows):
        clip_s = report.settings["clip_seconds"][config]
        header = ["variant"] + [f"b{b} clips/s" for b in batches]
        header += ["best ms/clip", "best RTF", "top-1 agree", "max |Δp|", "emb err/spread"]
        lines += ["", f"**{config}** ({clip_s:.2f} s windows)", "", _md_row(header)]
        lines.append("|" + "---|" * len(header))
        for row in (r for r in report.rows if r.config == config):
            if row.status != "ok":
                cells = [f"{row.variant} ({row.device})", row.status] + [""] * (len(header) - 2)
                lines.append(_md_row(cells))
                continue
            best = _best(row)
            agree = row.top1_agreement
            cells = [f"{row.variant} ({row.device})"] + [_cell(report, row, b) for b in batches]
            cells += [
                _fmt(best.get("ms_per_clip"), ".1f"),
                _fmt(best.get("real_time_factor"), ".0f", "×"),
                f"{agree:.1%} (n={row.agreement_clips})" if agree is not None else AGREE_LABELS.get(row.role, "–"),
                _fmt(row.probs_max_abs, ".1e"),
                _fmt(row.embedding_rel_err, ".1e"),
            ]
            lines.append(_md_row(cells))
    return "\n".join(lines) + "\n"


def write_json(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
    log.info("wrote %s", path)


def write_chart(report: Report, path: Path) -> None:
    """Grouped horizontal bars: speed-up over the peer at the same batch (linear; 1 = the peer), one bar per
    batch, one panel per config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys(r.config for r in report.rows))
    batches = report.settings["batches"]
    fig, axes = plt.subplots(len(configs), 1, figsize=(8, 3.2 * len(configs)), squeeze=False)
    height = 0.8 / max(1, len(batches))
    for ax, config in zip(axes[:, 0], configs, strict=True):
        rows = [r for r in report.rows if r.config == config and r.status == "ok" and r.role != "peer"]
        for j, batch in enumerate(batches):
            values = [report.ratio(r, batch) or 0.0 for r in rows]
            ax.barh([i + j * height for i in range(len(rows))], values, height=height, label=f"batch {batch}")
        ax.axvline(1.0, color="black", linewidth=1, linestyle="--")
        ax.set_yticks([i + height * (len(batches) - 1) / 2 for i in range(len(rows))])
        ax.set_yticklabels([r.variant.removeprefix("ours: ") for r in rows], fontsize=7)
        ax.set_xlabel("speed-up over the HF transformers peer at the same batch (dashed: peer)")
        ax.set_title(f"{config} — {report.device}, {report.date}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=CHART_DPI)
    plt.close(fig)
    log.info("wrote %s", path)
