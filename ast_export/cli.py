"""``ast-export``: a click group whose export subcommands come from the format registry.

``verify`` and ``import`` are fixed commands; ``onnx``, ``torchscript``, ``pt2`` (and any format registered
later, e.g. by a test) are generated from their :class:`~ast_export.artifact.ArtifactFormat` records when
looked up, so registering a format is all it takes to get ``ast-export <name>``.
"""

from __future__ import annotations

import logging
import re
import warnings

import click

from ast_export import registry
from ast_export.artifact import ArtifactFormat
from ast_export.commands import export_command, verify_cmd
from ast_export.importers.cli import import_cmd
from serving.contract import log_to_stderr

LOG_FORMAT = "%(message)s"
SENTENCE_END = re.compile(r"(?<=[.!?])\s")
EXAMPLES = {
    "": "ast-export onnx --weights runs/demo/modelo_audio.pth",
    "onnx": "ast-export onnx --weights runs/demo/modelo_audio.pth --precision int8 --manifest data/demo/manifest.csv",
    "torchscript": "ast-export torchscript --weights runs/demo/modelo_audio.pth --out model.ts",
    "pt2": "ast-export pt2 --weights runs/demo/modelo_audio.pth --out model.pt2",
    "verify": "ast-export verify runs/demo/modelo_audio.onnx --weights runs/demo/modelo_audio.pth",
    "import": "ast-export import ast audioset_10_10_0.4593.pth --labels class_labels_indices.csv "
              "--out modelo_audio.pth\n"
              "ast-export import hf ./ast-finetuned-audioset-10-10-0.4593 --out modelo_audio.pth",
}
PACKAGE_LOGGER = "ast_export"
HUB_LOGGER = "models.hub"  # --weights URL downloads


class LevelPrefixFormatter(logging.Formatter):
    """Plain messages; warnings say so (``WARNING: ...``), since a fallback must not read as a result."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"{record.levelname}: {text}" if record.levelno == logging.WARNING else text


class FormatGroup(click.Group):
    """A group that adds one export command per registered format (built once per record)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._exports: dict[int, click.Command] = {}

    def _export(self, fmt: ArtifactFormat) -> click.Command:
        if id(fmt) not in self._exports:
            self._exports[id(fmt)] = with_help(export_command(fmt), fmt.name)
        return self._exports[id(fmt)]

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*registry.FORMATS, *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        fmt = registry.FORMATS.get(cmd_name)
        return self._export(fmt) if fmt is not None else super().get_command(ctx, cmd_name)


def with_help(command: click.Command, name: str) -> click.Command:
    """``command`` with its example epilog and its whole first sentence as the group's one-line listing."""
    example = EXAMPLES.get(name)
    if example and not command.epilog:
        lines = example.splitlines()
        title = "Examples:" if len(lines) > 1 else "Example:"
        command.epilog = "\b\n" + "\n".join([title, *(f"  {line}" for line in lines)])
    if command.short_help is None and command.help:
        paragraph = " ".join(command.help.strip().split("\n\n")[0].split())
        command.short_help = SENTENCE_END.split(paragraph, maxsplit=1)[0]
    return command


@click.group(cls=FormatGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Also show torch/onnx warnings (tracer, deprecations).")
@click.version_option(package_name="ast-sampleid")
def main(quiet: bool, verbose: bool) -> None:
    """Export the AST scoring graph (waveform -> probs, embedding) and verify its parity with PyTorch."""
    # Our loggers speak at INFO; third-party ones (onnxscript's optimizer is chatty) only at WARNING.
    log_to_stderr(logging.WARNING, LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(LevelPrefixFormatter(LOG_FORMAT))
    for name in (PACKAGE_LOGGER, HUB_LOGGER):  # the hub's level also decides its download bar (serving.progress)
        logging.getLogger(name).setLevel(logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO))
    if not verbose:  # tracer/deprecation noise; parity is what verify checks, whatever the warnings say
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)


main.add_command(with_help(verify_cmd, "verify"))
main.add_command(with_help(import_cmd, "import"))
with_help(main, "")
