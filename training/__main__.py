"""``python -m training`` (and ``torchrun ... -m training``) runs ``ast-train``."""

from training.cli import main

if __name__ == "__main__":
    main(prog_name="ast-train")
