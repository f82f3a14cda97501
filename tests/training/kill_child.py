"""Child process of the kill tests: a tiny training run for the parent to SIGKILL.

    python -m tests.training.kill_child MANIFEST OUT EPOCHS
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tests.training.train_helpers import tiny_request
from training.train import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kill_child")
    parser.add_argument("manifest", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("epochs", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run(tiny_request(args.manifest, args.out, epochs=args.epochs))


if __name__ == "__main__":
    main()
