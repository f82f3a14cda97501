"""`make bench`: speed of every variant of the base and tiny configs, side by side with the HF peer, in one run.

    .venv/bin/python -m bench.speed.run [--configs base,tiny] [--device auto|cpu|cuda] [--batches 1,8,32]
                                  [--iters N] [--quick] [--no-experiments]

Writes bench/results/<date>-<device>.{json,md,png}; the markdown table is also printed to stdout, logs go to
stderr. Every figure includes the Kaldi frontend (inputs are raw waveform windows [B, window_samples]).
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
import torch

from bench.speed import env as bench_env
from bench.speed.artifacts import BenchModel, prepare
from bench.speed.exports import build_artifacts
from bench.speed.ort_runners import cuda_available
from bench.speed.peer import PEER_NAME
from bench.speed.report import Report, VariantRow, markdown, write_chart, write_json
from bench.speed.summary import experiments_markdown, goals_markdown
from bench.speed.synth import music_clips
from bench.speed.timing import TimingPlan, Unavailable, embedding_error, measure, split, top1_agreement
from bench.speed.variants import Variant, cpu_variants, gpu_variants

log = logging.getLogger("bench.speed.run")

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results"
POOL_SEED = 1  # bench clips; the head calibration uses another seed
POOL_CLIPS = {"base": 40, "small": 48, "tiny": 64}
AGREE_BATCH = 8
BASE_CPU_MAX_BATCH = 8


def _fill(runner, pool: np.ndarray, probs: np.ndarray, upto: int) -> np.ndarray:
    """Score the first ``upto`` pool clips the timing feed did not reach (untimed), for agreement."""
    missing = [i for i in range(min(upto, len(pool))) if np.isnan(probs[i]).any()]
    for start in range(0, len(missing), AGREE_BATCH):
        idx = missing[start : start + AGREE_BATCH]
        p, e = runner(np.ascontiguousarray(pool[idx]))
        probs[idx] = np.concatenate([p, e], axis=-1)
    return probs


def _measure_variant(variant: Variant, bm: BenchModel, pool: np.ndarray, plan: TimingPlan,
                     agree_clips: int) -> tuple[VariantRow, np.ndarray | None]:
    row = VariantRow(config=bm.config, variant=variant.name, device=variant.device, status="ok")
    log.info("== %s / %s (%s)", bm.config, variant.name, variant.device)
    try:
        runner = variant.build()
        timings, probs = measure(runner, pool, replace(plan, warmup=max(plan.warmup, variant.warmup)))
        probs = _fill(runner, pool, probs, agree_clips)
    except Unavailable as err:
        row.status = str(err)
        return row, None
    except Exception as err:  # noqa: BLE001 - one broken variant must not sink the whole run
        log.exception("variant failed")
        row.status = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
        return row, None
    finally:
        runner = None
        gc.collect()
    row.batches = {t.batch: t.to_dict(bm.clip_seconds) for t in timings}
    return row, probs


def _agreement(row: VariantRow, outputs: np.ndarray | None, ref_out: np.ndarray | None, variant: Variant,
               num_classes: int) -> None:
    if variant.reference:
        row.role, row.notes = "reference", "agreement reference"
    elif variant.peer:
        row.role, row.notes = "peer", "different (random) weights: agreement not meaningful"
    elif outputs is not None and ref_out is not None:
        (probs, emb), (ref, ref_emb) = split(outputs, num_classes), split(ref_out, num_classes)
        row.embedding_rel_err = embedding_error(emb, ref_emb)
        row.top1_agreement, row.agreement_clips = top1_agreement(probs, ref)
        both = ~np.isnan(probs).any(-1) & ~np.isnan(ref).any(-1)
        row.probs_max_abs = float(np.abs(probs[both] - ref[both]).max()) if both.any() else None


def bench_config(config: str, variants_for: list[str], plan: TimingPlan, threads: int, agree_clips: int,
                 sections: dict) -> tuple[list[VariantRow], BenchModel]:
    """All variants of one config; returns their rows (and the model, for the experiments)."""
    started = time.perf_counter()
    bm = prepare(config, CACHE)
    build_artifacts(bm)
    sections.setdefault("exports", {})[config] = bm.export_log
    pool = music_clips(POOL_CLIPS.get(config, 48), bm.window_samples, seed=POOL_SEED)  # [N, S]
    variants: list[Variant] = []
    if "cpu" in variants_for:
        variants += cpu_variants(bm, threads)
    if "cuda" in variants_for:
        variants += gpu_variants(bm)
    rows, refs = [], {}
    for variant in variants:
        row, probs = _measure_variant(variant, bm, pool, plan, agree_clips)
        if variant.reference and probs is not None:
            refs[variant.device] = probs
        _agreement(row, probs, refs.get(variant.device), variant, bm.ast_cfg.num_classes)
        rows.append(row)
    log.info("%s done in %.0f s", config, time.perf_counter() - started)
    return rows, bm


def _plan(config: str, batches: list[int], iters: int, quick: bool, budget_s: float, full_base: bool,
          device: str) -> TimingPlan:
    if config == "base" and device == "cpu" and not full_base:
        # 32 clips of AST-base cost 10-40 s per variant on 2 cores; the table would blow the 10-minute budget.
        batches = [b for b in batches if b <= BASE_CPU_MAX_BATCH] or batches[:1]
    if quick:
        return TimingPlan(batches=batches, iters=iters or 1, target_s=0.3, max_iters=3, budget_s=budget_s / 4)
    if config == "base" and not iters:
        # ~261 GFLOP per clip: a few calls per batch are all a 10-minute run can afford on 2 cores.
        return TimingPlan(batches=batches, iters=3, budget_s=budget_s)
    return TimingPlan(batches=batches, iters=iters, target_s=3.0, max_iters=30, budget_s=budget_s)


def _goal_summary(report: Report) -> dict:
    from bench.speed.goals import summarise_goals

    return summarise_goals(report)


@click.command()
@click.option("--configs", default="base,tiny", show_default=True, help="Comma-separated model configs.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batches", default="1,8,32", show_default=True, help="Comma-separated batch sizes.")
@click.option("--iters", type=int, default=0, help="Timed calls at batch 1 (fewer at larger batches); "
              "0 = base: 3, others: ~3 s per batch.")
@click.option("--threads", type=int, default=2, show_default=True, help="torch and ORT intra-op threads.")
@click.option("--budget-s", type=float, default=40.0, show_default=True,
              help="Skip a (variant, batch) whose estimated cost exceeds this.")
@click.option("--agree-clips", type=int, default=16, show_default=True,
              help="Clips every variant scores (untimed if the timing did not reach them) for top-1 agreement.")
@click.option("--quick", is_flag=True, help="Smoke run: 1 call per batch, tiny budgets.")
@click.option("--experiments/--no-experiments", default=True, show_default=True,
              help="ORT profile, thread/opt-level/quantisation experiments, ast-serve bench.")
@click.option("--full-base", is_flag=True, help="Also time base at batches > 8 on CPU (slow).")
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
def main(configs: str, device: str, batches: str, iters: int, threads: int, budget_s: float, agree_clips: int,
         quick: bool, experiments: bool, full_base: bool, out: Path) -> None:
    """Benchmark our variants against the transformers AST peer; write JSON, markdown and PNG."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(threads)
    has_gpu = cuda_available()
    run_device = "cuda" if device == "cuda" or (device == "auto" and has_gpu) else "cpu"
    # On a CPU-only machine the GPU rows are still listed, as "unmeasured: no GPU".
    variants_for = ["cpu", "cuda"] if device != "cpu" else ["cpu"]
    batch_list = [int(b) for b in batches.split(",") if b]
    env = bench_env.collect(threads)
    tag = f"{dt.date.today().isoformat()}-{'gpu' if has_gpu else 'cpu'}"
    sections: dict = {}
    rows: list[VariantRow] = []
    settings = {"batches": batch_list, "threads": threads, "quick": quick, "budget_s": budget_s,
                "agree_clips": agree_clips, "clip_seconds": {}, "plans": {}, "device": run_device}
    models: dict[str, BenchModel] = {}
    for config in configs.split(","):
        plan = _plan(config, batch_list, iters, quick, budget_s, full_base, run_device)
        if plan.batches != batch_list:
            settings.setdefault("notes", []).append(
                f"{config}: batches {sorted(set(batch_list) - set(plan.batches))} not timed on {run_device} "
                "(time budget; --full-base times them)")
        settings["plans"][config] = plan.__dict__
        config_rows, bm = bench_config(config, variants_for, plan, threads, agree_clips, sections)
        settings["clip_seconds"][config] = bm.clip_seconds
        rows += config_rows
        models[config] = bm
    report = Report(date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), device=env["device"],
                    env=env, settings=settings, rows=rows, peer_name=PEER_NAME, sections=sections)
    if experiments:
        from bench.experiments.experiments import run_experiments

        sections["experiments"] = run_experiments(models, threads, quick)
    sections["goals"] = _goal_summary(report)
    text = markdown(report) + goals_markdown(sections["goals"])
    if "experiments" in sections:
        text += experiments_markdown(sections["experiments"])
    env["load_average_end"] = bench_env.load_average()
    out.mkdir(parents=True, exist_ok=True)
    write_json(report, out / f"{tag}.json")
    (out / f"{tag}.md").write_text(text)
    try:
        write_chart(report, out / f"{tag}.png")
    except Exception as err:  # noqa: BLE001 - the chart is a nicety; the numbers are written already
        log.warning("chart failed: %s", err)
    click.echo(text)


if __name__ == "__main__":
    main()
