"""``ast-serve``'s help conventions, applied once to the finished command tree (click only, no heavy imports).

- Every command's ``--help`` ends with an example (:data:`EXAMPLES`, keyed by the command path).
- A group lists its subcommands by their whole first sentence (click would cut it at ~45 characters).
- Song lists come from arguments, ``--from-file LIST`` or ``-`` (one path a line on stdin):
  :func:`gather_inputs`.
- Options that make no sense together are warned in one line each (:func:`option_warnings`); the run goes on.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from typing import TextIO

import click

__all__ = ["EXAMPLES", "STDIN", "finish_help", "first_sentence", "gather_inputs", "option_warnings"]

TIMELINE_FORMATS = ("json", "jsonl")  # the formats that carry --timeline's per-window scores
STDIN = "-"  # a PATH of "-": read paths from stdin, one a line
SENTENCE_END = re.compile(r"(?<=[.!?])\s")

EXAMPLES: dict[str, str] = {
    "": "ast-serve identify --model runs/demo/modelo_audio.onnx song.flac",
    "identify": "ast-serve identify --model runs/demo/modelo_audio.onnx --format table a.flac b.wav\n"
                "find songs/ -name '*.flac' | ast-serve identify --format json -   > results.json\n"
                "ast-serve identify --index catalogue/ --from-file songs.txt --format jsonl",
    "info": "ast-serve info --model runs/demo/modelo_audio.onnx --json",
    "bench": "ast-serve bench --model runs/demo/modelo_audio.onnx --batch-size 16 --seconds 10",
    "http": "ast-serve http --model runs/demo/modelo_audio.onnx --port 8080\n"
            "curl -F file=@song.flac http://127.0.0.1:8080/v1/identify",
    "index": "ast-serve index build --model runs/demo/modelo_audio.onnx --records data/demo/records.csv "
             "--out catalogue/",
    "index build": "ast-serve index build --model runs/demo/modelo_audio.onnx --records records.csv --out catalogue/",
    "index add": "ast-serve index add catalogue/ new_record.flac",
    "index info": "ast-serve index info catalogue/",
}


def first_sentence(text: str | None) -> str:
    """The first sentence of a docstring's first paragraph, whole (the listing's one line)."""
    paragraph = " ".join((text or "").strip().split("\n\n")[0].split())
    return SENTENCE_END.split(paragraph, maxsplit=1)[0]


def _epilog(example: str) -> str:
    lines = example.splitlines()
    title = "Examples:" if len(lines) > 1 else "Example:"
    return "\b\n" + "\n".join([title, *(f"  {line}" for line in lines)])


def finish_help(command: click.Command, examples: Mapping[str, str], path: str = "") -> None:
    """Give ``command`` and every subcommand its example epilog and an uncut one-line listing."""
    if path in examples and not command.epilog:
        command.epilog = _epilog(examples[path])
    if command.short_help is None and command.help:
        command.short_help = first_sentence(command.help)
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            finish_help(sub, examples, f"{path} {name}".strip())


def gather_inputs(paths: Iterable[str], from_file: str | None, stdin: TextIO | None = None) -> list[str]:
    """The song list: ``paths`` in order, where ``-`` stands for the lines of stdin, then ``--from-file``'s lines.

    Blank lines are skipped; a line is a path as it is (spaces kept, no quoting). Raises
    :class:`click.UsageError` when the list is empty or the list file cannot be read.
    """
    out: list[str] = []
    for path in paths:
        out.extend(_lines(stdin or sys.stdin) if path == STDIN else [path])
    if from_file is not None:
        try:
            with open(from_file, encoding="utf-8", errors="surrogateescape") as handle:
                out.extend(_lines(handle))
        except OSError as err:
            raise click.UsageError(f"--from-file {from_file}: {err.strerror or err}") from None
    if not out:
        raise click.UsageError("no songs: give PATHS, --from-file LIST or - (paths on stdin)")
    return out


def _lines(handle: TextIO) -> list[str]:
    return [line.rstrip("\r\n") for line in handle if line.strip()]


def option_warnings(*, hop_s: float | None, window_s: float, fmt: str, timeline: bool, top_k: int,
                    labels: int | None) -> list[str]:
    """One line per identify option that cannot do what it says (``labels``: None with a catalogue)."""
    found = []
    if hop_s is not None and hop_s > window_s:
        found.append(f"--hop {hop_s:g} s is longer than the model's {window_s:g} s window: the audio between "
                     "windows is never scored")
    if timeline and fmt not in TIMELINE_FORMATS:
        found.append(f"--timeline is only written by --format json or jsonl; ignored with --format {fmt}")
    if labels is not None and top_k > labels:
        found.append(f"--top-k {top_k} is more than the model's {labels} labels: at most {labels} per song")
    return found
