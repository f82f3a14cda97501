"""Print the song paths of one manifest split, one per line (for shell pipelines such as ``make demo``).

``python -m training.data.manifest_paths data/demo/manifest.csv --split test``

Paths are printed relative to the current directory when they lie under it, absolute otherwise.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from serving.contract import SPLITS, log_to_stderr
from training.data.manifest import ManifestError, load_manifest

logger = logging.getLogger(__name__)


def display_path(path: Path, cwd: Path) -> str:
    """``path`` relative to ``cwd`` when it is inside it, else absolute."""
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


@click.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True)
def main(manifest: str, split: str) -> None:
    """Print the song paths of MANIFEST's SPLIT, one per line."""
    log_to_stderr(logging.WARNING, "%(levelname)s %(name)s: %(message)s")
    try:
        loaded = load_manifest(manifest)
    except ManifestError as exc:
        raise click.ClickException(exc.summary) from exc
    cwd = Path(os.getcwd()).resolve()
    for entry in loaded.split(split):
        click.echo(display_path(entry.path, cwd))


if __name__ == "__main__":
    main()
