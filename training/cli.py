"""``ast-train``: train an AST sample identifier from a manifest.

Results go to files in ``--out``; logs and progress go to stderr. Usage errors (bad manifest, option or
``--config-file``, unwritable or full ``--out``, missing checkpoint, unusable ``--init-from``) print one line on
stderr and exit with code 2 before any training step: exactly the project's typed errors are caught here
(:data:`USAGE_ERRORS`), so anything else is a bug and prints its traceback (exit code 1). A write into ``--out``
that fails later (disk filled up by someone else) is one line too, exit code 1; the last checkpoint survives it
and ``--resume`` continues.

Every option that sets a :class:`~training.config.TrainConfig` field is declared once, in
:data:`CONFIG_OPTIONS`: that table makes the click options and maps their values onto the config. Precedence,
lowest first: the preset, the ``--config-file``, the options.

Distributed: ``torchrun --nproc-per-node N -m training --manifest ... --out ...`` (gloo on CPU, nccl on
CUDA); ``--epoch-size`` and ``--batch-size`` are then the total windows per epoch and the per-rank batch.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from serving.contract import log_to_stderr
from training.config import (
    AMPS,
    DEFAULT_PRESET,
    DEVICES,
    OBJECTIVE_LR,
    OBJECTIVES,
    PRESETS,
    load_config_file,
    make_config,
)
from training.errors import error_line

if TYPE_CHECKING:
    from training.train import TrainRequest

logger = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class ConfigOption:
    """One ``ast-train`` option that sets the :class:`~training.config.TrainConfig` field ``field``."""

    flag: str
    field: str
    type: click.ParamType
    help: str


CONFIG_OPTIONS = (
    ConfigOption("--epochs", "epochs", click.IntRange(min=1), "Epochs (with --resume, the run's new total)."),
    ConfigOption("--device", "device", click.Choice(DEVICES), "Where to train."),
    ConfigOption("--seed", "seed", click.INT, "Seed of every random draw."),
    ConfigOption("--batch-size", "batch_size", click.IntRange(min=1), "Windows per step per rank."),
    ConfigOption("--lr", "lr", click.FloatRange(min=0, min_open=True), "Peak learning rate."),
    ConfigOption("--ema-decay", "ema_decay", click.FloatRange(min=0, max=1, max_open=True),
                 "Validate and keep a moving average of the weights with this decay (0 = off)."),
    ConfigOption("--epoch-size", "epoch_size", click.IntRange(min=1), "Training windows per epoch."),
    ConfigOption("--workers", "workers", click.IntRange(min=0), "DataLoader worker processes."),
    ConfigOption("--threshold-far", "threshold_far", click.FloatRange(0, 1, min_open=True, max_open=True),
                 "False-accept rate of the calibrated default 'no match' threshold stored with the weights."),
    ConfigOption("--threads", "threads", click.IntRange(min=0), "torch CPU threads per rank (0 = torch default)."),
    ConfigOption("--objective", "objective", click.Choice(OBJECTIVES),
                 "What to train: the contrastive fingerprint (+ auxiliary CE) or the classifier; auto = "
                 "fingerprint when records.csv lists records."),
    ConfigOption("--tau", "tau", click.FloatRange(min=0, min_open=True), "Fingerprint: NT-Xent temperature."),
    ConfigOption("--ce-weight", "ce_weight", click.FloatRange(min=0),
                 "Fingerprint: weight of the auxiliary cross-entropy on the record labels."),
    ConfigOption("--pairs", "pairs", click.IntRange(min=2), "Fingerprint: positive pairs per step."),
    ConfigOption("--budget-minutes", "budget_minutes", click.FloatRange(min=0),
                 "Fingerprint: training time budget in minutes (0 = scaled with the catalogue's audio length)."),
    ConfigOption("--fp-dim", "fp_dim", click.IntRange(min=1), "Fingerprint: embedding width."),
    ConfigOption("--fp-frames", "fp_frames", click.IntRange(min=16), "Fingerprint: frames per window (200 = 2 s)."),
    ConfigOption("--amp", "amp", click.Choice(AMPS),
                 "Fingerprint: bf16 autocast (auto = on CUDA and on CPUs with avx512_bf16/amx_bf16)."),
)


def preset_default(field: str) -> str:
    """The presets' value of ``field`` for ``--help``: one value when they agree, else one per preset."""
    values = {name: _shown(getattr(make_config(name), field)) for name in PRESETS}
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return ", ".join(f"{name}: {value}" for name, value in values.items())


def _shown(value: Any) -> str:
    """A default as ``--help`` shows it; None is an unset learning rate, the objective's (:data:`OBJECTIVE_LR`)."""
    return "/".join(f"{lr} {objective}" for objective, lr in OBJECTIVE_LR.items()) if value is None else str(value)


def config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Declare every :data:`CONFIG_OPTIONS` entry as a click option (``None`` = not given)."""
    for opt in reversed(CONFIG_OPTIONS):
        help_text = f"{opt.help} [default: {preset_default(opt.field)}]"
        command = click.option(opt.flag, opt.field, type=opt.type, default=None, help=help_text)(command)
    return command


def _sha256_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``models.hub``'s check of ``--init-sha256``, imported only when the option is used (torch is heavy)."""
    from models.hub import sha256_option_callback

    return sha256_option_callback(ctx, param, value)


def usage_errors() -> tuple[type[BaseException], ...]:
    """The typed errors that mean "bad input" (exit code 2); imported late to keep ``--help`` fast."""
    from models import WeightsError
    from models.hub import HubError
    from serving.contract import AudioError
    from training.checkpoint import CheckpointError
    from training.data.manifest import ManifestError
    from training.errors import ConfigError
    from training.model_setup import InitError
    from training.out_dir import OutputDirError

    return (ManifestError, OutputDirError, CheckpointError, WeightsError, InitError, HubError, AudioError,
            ConfigError)


def _preset_choice(preset: str | None, legacy: str | None) -> str | None:
    """``--preset``, or the deprecated ``--config`` alias (one warning)."""
    if legacy is None:
        return preset
    logger.warning("--config is deprecated; use --preset %s", legacy)
    if preset is not None and preset != legacy:
        raise click.UsageError(f"--config {legacy} and --preset {preset} disagree; give --preset only")
    return legacy


def _init_from_kind(init_from: str | None) -> str | None:
    """One line when a local ``--init-from`` is not a weights file (an ONNX export, a checkpoint, a folder)."""
    if not init_from or "://" in init_from:
        return None
    from serving.contract import kind_mismatch

    return kind_mismatch(Path(init_from).expanduser(), ("weights", "torch_pickle"))


def build_request(manifest: Path, out_dir: Path, preset: str | None, config_file: Path | None,
                  options: dict[str, Any], **modes: Any) -> TrainRequest:
    """The :class:`~training.train.TrainRequest` of the command line (``modes``: init_from, init_sha256,
    resume).

    Raises:
        training.errors.ConfigError: a bad ``--config-file`` or value.
    """
    from training.train import TrainRequest  # noqa: F811 - heavy imports after --help

    from_file = load_config_file(config_file) if config_file is not None else {}
    chosen = preset or from_file.get("preset")
    given_values = {**from_file, **{k: v for k, v in options.items() if v is not None}}
    given_values.pop("preset", None)
    cfg = make_config(chosen or DEFAULT_PRESET, **given_values)
    given = frozenset(given_values) | ({"preset"} if chosen else frozenset())
    return TrainRequest(manifest=manifest, out_dir=out_dir, config=cfg, preset_given=chosen is not None,
                        given=given, **modes)


EPILOG = """\b
Examples:
  ast-train --manifest data/demo/manifest.csv --out runs/demo --preset tiny
  ast-train --manifest data/demo/manifest.csv --out runs/demo --resume
  ast-train --manifest manifest.csv --out runs/base --preset base --init-from modelo_audio.pth
  torchrun --nproc-per-node 2 -m training --manifest manifest.csv --out runs/ddp"""


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}, epilog=EPILOG)
@click.option("--manifest", type=click.Path(path_type=Path), required=True,
              help="Manifest CSV (song, sample[, split, start_s, end_s]).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder (created).")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help=f"Model size and its training values [default: {DEFAULT_PRESET}, or the --init-from file's].")
@click.option("--config", "legacy_preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="Deprecated alias of --preset.")
@click.option("--config-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="JSON or TOML file of TrainConfig fields ('augment': a table of AugmentConfig fields); "
                   "options override it.")
@click.option("--init-from", type=str, default=None, help="Weights file (or URL) to start from.")
@click.option("--init-sha256", type=str, default=None, callback=_sha256_callback,
              help="Expected SHA-256 of the --init-from file.")
@click.option("--resume", is_flag=True,
              help="Continue from OUT/checkpoint.pt after its last epoch, with its config; only --epochs, "
                   "--device, --workers and --threads may change.")
@config_options
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr (no progress bar).")
@click.version_option(package_name="ast-sampleid")
def main(manifest: Path, out_dir: Path, preset: str | None, legacy_preset: str | None, config_file: Path | None,
         init_from: str | None, init_sha256: str | None, resume: bool, verbose: bool, quiet: bool,
         **options: Any) -> None:
    """Train an AST sample identifier; writes OUT/modelo_audio.pth, metrics.json and curves.png."""
    log_to_stderr(logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO), LOG_FORMAT)
    preset = _preset_choice(preset, legacy_preset)
    if init_sha256 and not init_from:
        raise click.UsageError("--init-sha256 needs --init-from")
    wrong_kind = _init_from_kind(init_from)
    if wrong_kind:  # before the data is read: the wrong kind of file is named with the command that takes it
        click.echo(f"ast-train: error: {wrong_kind}", err=True)
        sys.exit(EXIT_USAGE)
    from training.out_dir import OutputWriteError
    from training.train import run  # heavy imports after --help

    try:
        req = build_request(manifest, out_dir, preset, config_file, options, init_from=init_from,
                            init_sha256=init_sha256, resume=resume)
        metrics = run(req)
    except usage_errors() as exc:
        click.echo(f"ast-train: error: {error_line(exc)}", err=True)
        sys.exit(EXIT_USAGE)
    except OutputWriteError as exc:  # after training started: not a usage error
        click.echo(f"ast-train: error: {error_line(exc)}", err=True)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        click.echo("ast-train: interrupted (resume with --resume)", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if metrics.get("rank", 0) == 0:  # the result on stdout, one JSON line (logs went to stderr)
        summary = {"weights": str(out_dir / "modelo_audio.pth"), "test_top1": metrics["test_top1"],
                   "test_top5": metrics["test_top5"], "best_epoch": metrics.get("best_epoch"),
                   "train_time_s": metrics["train_time_s"], "objective": metrics.get("objective", "classify")}
        click.echo(json.dumps(summary))


if __name__ == "__main__":
    main()
