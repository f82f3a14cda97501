"""ast-serve identify's song list: arguments, --from-file LIST and - (stdin), as one JSON array."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from serving.cli import main as serve_main
from tests.serving.conftest import write_tone


@pytest.fixture
def songs(tmp_path: Path) -> list[str]:
    return [str(write_tone(tmp_path / f"s{i}.wav", 1.5)) for i in range(3)]


def test_identify_reads_songs_from_stdin_and_a_list_file(fake_model: Path, songs: list[str], tmp_path: Path) -> None:
    listing = tmp_path / "songs.txt"
    listing.write_text(f"{songs[1]}\n\n{songs[2]}\n")
    result = CliRunner().invoke(serve_main, ["identify", "--model", str(fake_model), "--format", "json",
                                             "--from-file", str(listing), "-"], input=f"{songs[0]}\n")
    assert result.exit_code == 0, result.output
    assert [r["path"] for r in json.loads(result.stdout)] == songs  # one JSON array, stdin's first


def test_identify_without_songs_is_a_usage_error(fake_model: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    result = CliRunner().invoke(serve_main, ["identify", "--model", str(fake_model), "--from-file", str(empty)])
    assert result.exit_code == 2 and "no songs" in result.output


@pytest.mark.parametrize("args, words", [
    (["--hop", "2.5"], "longer than the model's 1 s window"),
    (["--timeline", "--format", "table"], "--timeline is only written by --format json or jsonl"),
    (["--timeline", "--format", "csv"], "ignored with --format csv"),
    (["--top-k", "9"], "--top-k 9 is more than the model's 4 labels"),
])
def test_options_that_make_no_sense_are_warned_in_one_line(fake_model: Path, songs: list[str], args: list[str],
                                                             words: str) -> None:
    result = CliRunner().invoke(serve_main, ["identify", "--model", str(fake_model), *args, songs[0]])
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if words in line], result.stderr


def test_sensible_options_warn_nothing(fake_model: Path, songs: list[str]) -> None:
    result = CliRunner().invoke(serve_main, ["identify", "--model", str(fake_model), "--top-k", "4", "--hop", "0.5",
                                             "--timeline", "--format", "json", songs[0]])
    assert result.exit_code == 0 and "WARNING" not in result.stderr and "--" not in result.stderr
