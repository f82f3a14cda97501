"""Progress bars follow tqdm's convention: drawn only on a TTY, never with -q (no ``\\r`` in a redirected log)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving.contract import show_progress
from tests.serving.conftest import write_tone


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("level, tty, shown", [
    (logging.INFO, True, True), (logging.WARNING, True, False), (logging.ERROR, True, False),
    (logging.INFO, False, False),
])
def test_bar_only_on_a_tty_and_at_info(level: int, tty: bool, shown: bool) -> None:
    log = logging.getLogger("tests.progress")
    log.setLevel(level)
    assert show_progress(log, _Tty() if tty else io.StringIO()) is shown


def test_closed_stream_means_no_bar() -> None:
    stream = io.StringIO()
    stream.close()
    assert show_progress("tests.progress", stream) is False


def test_identify_writes_no_carriage_return_to_a_redirected_stderr(fake_model: Path, tmp_path: Path) -> None:
    songs = [str(write_tone(tmp_path / f"s{i}.wav", 2.0)) for i in range(3)]
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as err:
        proc = subprocess.run([sys.executable, "-m", "serving.cli", "identify", "--model", str(fake_model), *songs],
                              stdout=subprocess.PIPE, stderr=err, check=False,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.returncode == 0
    assert b"\r" not in log.read_bytes()
