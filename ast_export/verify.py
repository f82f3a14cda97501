"""Parity of an artifact against the eager model it came from; a miss *fails* (optimum only warns).

Order per runtime, as optimum validates: output names -> shapes -> values. Values are compared on a pool of
real audio windows (or deterministic test signals) plus noise, silence, full-scale clipping and a chirp, at
batch sizes 1, 3 and 8, and reported per (runtime, batch size, signal kind) with max abs / max rel diffs and
top-1 agreement. Reduced precisions are judged on decisions instead: top-1 agreement on held-out song windows
and the song-level accuracy drop (``serving.contract.song_scores``, the shared scoring rule).

The format, its runners and its bar come from the artifact's record in ``registry`` (found by suffix); the
precision from its metadata.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ast_export.errors import ExportError
from ast_export.metadata import artifact_precision
from ast_export.options import VerifyOptions
from ast_export.registry import format_for_path, read_metadata
from ast_export.runners import Runner, eager_runner
from ast_export.source import Source
from ast_export.spec import Tolerance
from ast_export.verify_inputs import Geometry, VerifyInputs, build_inputs
from serving.contract import INPUT_NAME, OUTPUT_NAMES, atomic_write, one_line, song_scores

logger = logging.getLogger(__name__)

BATCH_SIZES = (1, 3, 8)
REL_FLOOR = 1e-6  # denominators below this are clamped, so near-zero probs don't blow up the rel diff
HELDOUT_BATCH = 8
OK, FAIL = "\u2713", "\u2717"


@dataclass
class Check:
    """One line of the report."""

    runtime: str
    name: str
    passed: bool
    detail: str = ""
    batch: int | None = None
    kind: str | None = None
    probs_max_abs: float | None = None
    probs_max_rel: float | None = None
    embedding_max_abs: float | None = None
    embedding_max_rel: float | None = None
    top1_agreement: float | None = None


@dataclass
class VerifyReport:
    """Everything verification measured; ``passed`` is the AND of all checks."""

    artifact: str
    format: str
    precision: str
    optimized: bool
    tolerance: dict[str, Any]
    audio_source: str
    heldout_source: str
    checks: list[Check] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def _log(check: Check) -> None:
    mark = OK if check.passed else FAIL
    name = "" if check.name == check.runtime else check.name  # "metadata", not "metadata metadata"
    where = " ".join(x for x in (check.runtime, name,
                                 f"batch={check.batch}" if check.batch else "", check.kind or "") if x)
    logger.log(logging.INFO if check.passed else logging.ERROR, "%s %s %s", mark, where, check.detail)


def _diffs(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    rel = diff / np.maximum(np.abs(b.astype(np.float64)), REL_FLOOR)
    return float(diff.max(initial=0.0)), float(rel.max(initial=0.0))


def _within(value: float, bar: float | None) -> bool:
    return bar is None or (np.isfinite(value) and value <= bar)


def compare_values(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], tol: Tolerance) -> Check:
    """Value check of one batch group: diffs, top-1 agreement, and the verdict under ``tol``."""
    p_abs, p_rel = _diffs(got["probs"], ref["probs"])
    e_abs, e_rel = _diffs(got["embedding"], ref["embedding"])
    agree = float(np.mean(got["probs"].argmax(1) == ref["probs"].argmax(1)))
    exact = not tol.judged_on_decisions  # fp32 bars: top-1 identical on every window
    passed = _within(p_abs, tol.probs_max_abs) and _within(e_abs, tol.embedding_max_abs) and \
        (agree >= tol.min_top1_agreement or not exact)
    detail = (f"probs max abs {p_abs:.2e} (rel {p_rel:.2e}), embedding max abs {e_abs:.2e} "
              f"(rel {e_rel:.2e}), top-1 agreement {agree:.1%}")
    return Check("", "values", passed, detail, probs_max_abs=p_abs, probs_max_rel=p_rel, embedding_max_abs=e_abs,
                 embedding_max_rel=e_rel, top1_agreement=agree)


def check_names(runner: Runner) -> Check:
    """Input and output names match the spec (extra outputs are allowed, missing ones are not)."""
    missing = [n for n in OUTPUT_NAMES if n not in runner.output_names]
    ok = runner.input_names == [INPUT_NAME] and not missing
    detail = f"inputs {runner.input_names}, outputs {runner.output_names}"
    return Check(runner.name, "output names", ok, detail + (f"; missing {missing}" if missing else ""))


def _run_batched(runner: Runner, windows: np.ndarray, batch: int) -> list[dict[str, np.ndarray]]:
    return [runner(windows[i:i + batch]) for i in range(0, len(windows), batch)]


def check_runtime(runner: Runner, eager: Runner, inputs: VerifyInputs, src: Source, tol: Tolerance
                  ) -> list[Check]:
    """Names -> shapes -> values for one runtime over every batch size; stops at the first structural miss."""
    checks = [check_names(runner)]
    if not checks[0].passed:
        return checks
    kinds = np.array(inputs.kinds)
    for batch in BATCH_SIZES:
        got, ref = _run_batched(runner, inputs.windows, batch), _run_batched(eager, inputs.windows, batch)
        bad = [(name, out[name].shape, src.spec.output_shape(name, len(r["probs"])))
               for out, r in zip(got, ref, strict=True) for name in OUTPUT_NAMES
               if out[name].shape != src.spec.output_shape(name, len(r["probs"]))]
        checks.append(Check(runner.name, "shapes", not bad, f"{len(got)} runs" if not bad else
                            f"got {bad[0][1]} for {bad[0][0]}, expected {bad[0][2]}", batch=batch))
        if bad:
            return checks
        cat = {n: np.concatenate([o[n] for o in got]) for n in OUTPUT_NAMES}
        cat_ref = {n: np.concatenate([o[n] for o in ref]) for n in OUTPUT_NAMES}
        for kind in dict.fromkeys(inputs.kinds):
            sel = kinds == kind
            check = compare_values({n: v[sel] for n, v in cat.items()}, {n: v[sel] for n, v in cat_ref.items()},
                                   tol)
            check.runtime, check.batch, check.kind = runner.name, batch, kind
            checks.append(check)
    return checks


def check_heldout(runner: Runner, eager: Runner, inputs: VerifyInputs, tol: Tolerance) -> list[Check]:
    """Window top-1 agreement and song-level accuracy drop on held-out songs (reduced-precision bar)."""
    agree, n_windows, correct, correct_ref, labelled = 0, 0, 0, 0, 0
    for song in inputs.heldout:
        got = np.concatenate([o["probs"] for o in _run_batched(runner, song.windows, HELDOUT_BATCH)])
        ref = np.concatenate([o["probs"] for o in _run_batched(eager, song.windows, HELDOUT_BATCH)])
        agree += int((got.argmax(1) == ref.argmax(1)).sum())
        n_windows += len(got)
        if song.label is not None:
            labelled += 1
            correct += int(song_scores(got).argmax() == song.label)
            correct_ref += int(song_scores(ref).argmax() == song.label)
    rate = agree / max(n_windows, 1)
    checks = [Check(runner.name, "held-out top-1 agreement", rate >= tol.min_top1_agreement,
                    f"{rate:.2%} of {n_windows} windows ({inputs.heldout_source}), bar "
                    f"{tol.min_top1_agreement:.0%}", top1_agreement=rate)]
    if labelled:
        acc, acc_ref = 100.0 * correct / labelled, 100.0 * correct_ref / labelled
        drop = acc_ref - acc
        checks.append(Check(runner.name, "held-out accuracy drop", drop <= (tol.max_accuracy_drop or 0.0),
                            f"eager {acc_ref:.1f}% -> artifact {acc:.1f}% on {labelled} songs "
                            f"(drop {drop:.1f} pt, bar {tol.max_accuracy_drop} pt)"))
    return checks


def check_metadata(meta: dict[str, Any], src: Source) -> Check:
    """The artifact's metadata describes the weights it is compared with."""
    expected = {"labels": list(src.wf.labels), "window_samples": src.spec.window_samples,
                "sample_rate": src.wf.fbank_config.sample_rate}
    wrong = [k for k, v in expected.items() if meta.get(k) != v]
    ok = not wrong
    detail = "labels, sample_rate, window_samples match" if ok else f"mismatch in {', '.join(wrong)}"
    if meta.get("weights_sha256") != src.sha256:
        detail += "; exported from a different weights file (sha256 differs)"
    return Check("metadata", "metadata", ok, detail)


def verify_artifact(path: Path, src: Source, options: VerifyOptions | None = None) -> VerifyReport:
    """Compare the artifact at ``path`` with ``src``'s eager model; see the module docstring.

    Raises:
        ArtifactError: unknown suffix, unreadable file or metadata, or a precision the format does not declare.
        VerifyInputError: nothing to compare on (no ``--audio`` file decodes, an unreadable ``--manifest``).
    """
    options = options or VerifyOptions()
    fmt, meta = format_for_path(path), read_metadata(path)
    precision, optimized = artifact_precision(meta)
    tol = fmt.tolerance(precision, optimized)
    runners, skipped = fmt.runners(path, options.threads)
    geo = Geometry(src.wf.fbank_config.sample_rate, src.spec.window_samples, int(meta["hop_samples"]))
    inputs = build_inputs(geo, list(src.wf.labels), options, want_heldout=tol.judged_on_decisions)
    report = VerifyReport(str(path), fmt.name, precision, optimized, asdict(tol), inputs.audio_source,
                          inputs.heldout_source, skipped=skipped)
    report.checks.append(check_metadata(meta, src))
    eager = eager_runner(src.model)
    for runner in runners:
        report.checks += check_runtime(runner, eager, inputs, src, tol)
        if inputs.heldout:
            report.checks += check_heldout(runner, eager, inputs, tol)
    for check in report.checks:
        _log(check)
    return report


def write_report(report: VerifyReport, path: Path) -> None:
    """Write the JSON report atomically (creating parent folders).

    Raises:
        ExportError: ``path`` cannot be written.
    """
    text = json.dumps(report.to_json(), indent=2, allow_nan=True) + "\n"
    try:
        atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
    except OSError as err:  # the user's to fix: say where and what
        raise ExportError(f"{path}: cannot write the verify report ({one_line(err)}); choose another --report "
                          "or make its folder writable") from err


def default_report_path(artifact: Path) -> Path:
    """``<artifact>.verify.json`` beside the artifact."""
    return artifact.with_name(artifact.name + ".verify.json")
