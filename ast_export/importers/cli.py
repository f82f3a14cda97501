"""``ast-export import hf|ast PATH --out modelo_audio.pth``: community AST checkpoints into our weights file.

PATH may be an ``http(s)://`` URL for ``ast`` (a single ``.pth``): it is downloaded once into the cache
(``models.hub``) and checked against ``--sha256`` when given. For ``hf`` PATH is a local folder; ``--sha256``
then checks its weights file. The written path goes to stdout, the summary to stderr.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from ast_export.cli_common import one_line_errors, sha256_option
from ast_export.errors import ExportError
from ast_export.importers.files import HF_WEIGHT_FILES
from ast_export.importers.remap import ImportOptions, import_hf, import_official
from models.hub import is_url, resolve_weights
from models.weights import save_weights
from serving.contract import one_line

logger = logging.getLogger(__name__)

FORMATS = ("hf", "ast")


def _import_options(func):  # noqa: ANN001, ANN202 - click decorator stack
    options = [
        click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="Weights file to write (e.g. modelo_audio.pth)."),
        click.option("--labels", "labels_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Label names: AudioSet-style CSV (index,mid,display_name). Default: HF id2label, "
                          "or AudioSet indices for official checkpoints."),
        sha256_option("the checkpoint file"),
        click.option("--fstride", type=click.IntRange(min=1), help="ast: the checkpoint's frequency stride "
                     "(default 10, the official AudioSet recipe)."),
        click.option("--tstride", type=click.IntRange(min=1), help="ast: the checkpoint's time stride "
                     "(default 10)."),
        click.option("--target-frames", type=click.IntRange(min=1),
                     help="Frames of the imported model (default: the checkpoint's; 1024 for official "
                          "AudioSet). The position embedding is resampled when the patch grid changes."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("import")
@click.argument("fmt", metavar="hf|ast", type=click.Choice(FORMATS))
@click.argument("path", metavar="PATH")
@_import_options
@one_line_errors
def import_cmd(fmt: str, path: str, out: Path, labels_csv: Path | None, sha256: str | None,
               fstride: int | None, tstride: int | None, target_frames: int | None) -> None:
    """Convert a Hugging Face AST folder (hf) or an official YuanGongND/ast .pth (ast) into a weights file."""
    if fmt == "hf" and (fstride or tstride):
        raise click.UsageError("--fstride/--tstride are read from config.json for hf checkpoints")
    options = ImportOptions(labels_csv=labels_csv, fstride=fstride, tstride=tstride,
                            target_frames=target_frames, source_sha256=sha256)
    if fmt == "hf":
        wf = import_hf(_hf_folder(path, sha256), options)
    else:
        local = resolve_weights(path, sha256)
        if not local.is_file():
            raise click.BadParameter(f"{path} is not a file", param_hint="PATH")
        wf = import_official(local, options)
        if is_url(path):
            wf.train["imported_from"]["url"] = path
    try:
        save_weights(out, wf)
    except OSError as err:  # an unwritable --out is the user's to fix, not a bug
        raise ExportError(f"{out}: cannot write the weights file ({one_line(err)}); choose another --out") from err
    logger.info("%s: %d classes (%s ...), %d frames per window", out, len(wf.labels),
                ", ".join(wf.labels[:3]), wf.model_config.target_frames)
    click.echo(str(out))


def _hf_folder(source: str, sha256: str | None) -> Path:
    if is_url(source):
        raise click.BadParameter("hf checkpoints are folders; download them first (e.g. huggingface-cli "
                                 "download) and pass the local folder", param_hint="PATH")
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise click.BadParameter(f"{source} is not a folder", param_hint="PATH")
    if sha256:
        weights = next((folder / n for n in HF_WEIGHT_FILES if (folder / n).is_file()), None)
        if weights is None:
            raise click.BadParameter(f"--sha256 needs one of {', '.join(HF_WEIGHT_FILES)} in {folder}")
        resolve_weights(str(weights), sha256)  # raises HubError on mismatch
    return folder
