"""``ast-export``: a small click group; subcommands live in their own modules and are registered here.

To add a subcommand (e.g. ``import``, issue 7), write it in its module and add one ``main.add_command`` line.
"""

from __future__ import annotations

import logging
import warnings

import click

from ast_export.commands import onnx_cmd, pt2_cmd, torchscript_cmd, verify_cmd
from ast_export.import_cli import import_cmd
from models.logs import log_to_stderr

LOG_FORMAT = "%(message)s"
PACKAGE_LOGGER = "ast_export"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Also show torch/onnx warnings (tracer, deprecations).")
def main(quiet: bool, verbose: bool) -> None:
    """Export the AST scoring graph (waveform -> probs, embedding) and verify its parity with PyTorch."""
    # Our loggers speak at INFO; third-party ones (onnxscript's optimizer is chatty) only at WARNING.
    log_to_stderr(logging.WARNING, LOG_FORMAT)
    logging.getLogger(PACKAGE_LOGGER).setLevel(logging.WARNING if quiet else logging.INFO)
    if not verbose:  # tracer/deprecation noise; parity is what verify checks, whatever the warnings say
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)


main.add_command(onnx_cmd)
main.add_command(torchscript_cmd)
main.add_command(pt2_cmd)
main.add_command(verify_cmd)
main.add_command(import_cmd)
