"""``ast-train``: train an AST sample identifier from a manifest.

Results go to files in ``--out``; logs and progress go to stderr. Usage errors (bad manifest, unwritable
or full ``--out``, missing checkpoint, unusable ``--init-from``) print one line on stderr and exit with
code 2 before any training step. A write into ``--out`` that fails later (disk filled up by someone else)
is one line too, exit code 1; the last checkpoint survives it and ``--resume`` continues.

Distributed: ``torchrun --nproc-per-node N -m training --manifest ... --out ...`` (gloo on CPU, nccl on
CUDA); ``--epoch-size`` and ``--batch-size`` are then the total windows per epoch and the per-rank batch.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from models.hub import sha256_option_callback
from models.logs import log_to_stderr
from training.config import DEFAULT_VARIANT, PRESETS, make_config

EXIT_FAILED = 1
EXIT_USAGE = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _one_line(exc: BaseException) -> str:
    """First problem of an exception as one line (ManifestError lists several: keep the count + first 3)."""
    problems = getattr(exc, "problems", None)
    if problems:
        shown = "; ".join(problems[:3])
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        return f"{getattr(exc, 'path', 'manifest')}: {shown}{more}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _usage_errors() -> tuple[type[BaseException], ...]:
    from models import WeightsError
    from models.hub import HubError
    from training.checkpoint import CheckpointError
    from training.data.manifest import ManifestError
    from training.model_setup import InitError
    from training.out_dir import OutputDirError

    return ManifestError, OutputDirError, CheckpointError, WeightsError, InitError, HubError, FileNotFoundError


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--manifest", type=click.Path(path_type=Path), required=True, help="Manifest CSV (song, sample[, split, start_s, end_s]).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder (created).")
@click.option("--config", "variant", type=click.Choice(sorted(PRESETS)), default=None,
              help=f"Model variant [default: {DEFAULT_VARIANT}, or the --init-from file's].")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epochs (overrides the preset; with --resume, the run's new total).")
@click.option("--init-from", type=str, default=None, help="Weights file (or URL) to start from.")
@click.option("--init-sha256", type=str, default=None, callback=sha256_option_callback,
              help="Expected SHA-256 of the --init-from file.")
@click.option("--resume", is_flag=True,
              help="Continue from OUT/checkpoint.pt after its last epoch, with its config; only --epochs, "
                   "--device, --workers and --threads may change.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="[default: auto]")
@click.option("--seed", type=int, default=None, help="[default: 0]")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Windows per step per rank.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Peak learning rate.")
@click.option("--ema-decay", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              help="Validate and keep a moving average of the weights with this decay "
                   "(0 = off) [default: 0].")
@click.option("--epoch-size", type=click.IntRange(min=1), default=None, help="Training windows per epoch.")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="DataLoader worker processes.")
@click.option("--threads", type=click.IntRange(min=0), default=None,
              help="torch CPU threads per rank (0 = torch default).")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(manifest: Path, out_dir: Path, variant: str | None, epochs: int | None, init_from: str | None,
         init_sha256: str | None, resume: bool, device: str | None, seed: int | None, batch_size: int | None,
         lr: float | None, ema_decay: float | None, epoch_size: int | None, workers: int | None,
         threads: int | None, verbose: bool) -> None:
    """Train an AST sample identifier; writes OUT/modelo_audio.pth, metrics.json and curves.png."""
    log_to_stderr(logging.DEBUG if verbose else logging.INFO, LOG_FORMAT)
    if init_sha256 and not init_from:
        raise click.UsageError("--init-sha256 needs --init-from")
    from training.out_dir import OutputWriteError
    from training.train import TrainRequest, run  # heavy imports after --help

    # None = not given: the preset's value, or on --resume the checkpoint's.
    options = {"epochs": epochs, "device": device, "seed": seed, "batch_size": batch_size, "lr": lr,
               "ema_decay": ema_decay, "epoch_size": epoch_size, "workers": workers, "threads": threads}
    cfg = make_config(variant or DEFAULT_VARIANT, **options)
    given = frozenset(name for name, value in {**options, "variant": variant}.items() if value is not None)
    req = TrainRequest(manifest=manifest, out_dir=out_dir, config=cfg, init_from=init_from,
                       init_sha256=init_sha256, resume=resume,
                       variant_given=variant is not None, given=given)
    try:
        metrics = run(req)
    except _usage_errors() as exc:
        click.echo(f"ast-train: error: {_one_line(exc)}", err=True)
        sys.exit(EXIT_USAGE)
    except ValueError as exc:
        click.echo(f"ast-train: error: {_one_line(exc)}", err=True)
        sys.exit(EXIT_USAGE)
    except OutputWriteError as exc:  # after training started: not a usage error
        click.echo(f"ast-train: error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        click.echo("ast-train: interrupted (resume with --resume)", err=True)
        sys.exit(130)
    if metrics.get("rank", 0) == 0:  # the result on stdout, one JSON line (logs went to stderr)
        summary = {"weights": str(out_dir / "modelo_audio.pth"), "test_top1": metrics["test_top1"],
                   "test_top5": metrics["test_top5"], "best_epoch": metrics["best_epoch"],
                   "train_time_s": metrics["train_time_s"]}
        click.echo(json.dumps(summary))


if __name__ == "__main__":
    main()
