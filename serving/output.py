"""Result writers: ``table``, ``json``, ``jsonl`` and ``csv``, all on stdout.

- ``table`` (default when stdout is a terminal): one row per match, aligned columns, times as m:ss.s.
- ``jsonl`` (default when stdout is not a terminal, e.g. piped to a file or ``jq``): one JSON object per
  input per line, written and flushed as each file finishes, so a killed run loses nothing already scored.
- ``json``: one JSON array, written when the run ends (a valid document needs the closing bracket).
- ``csv``: one row per match (``rank`` 1..k); an input with no match or an error gets one row with empty
  match fields, so every input appears.

Every object carries the DESIGN.md fields: ``path``, ``duration_s``, ``matches`` (``sample``, ``score``,
``start_s``, ``end_s``, best first) and ``error`` (null or one line); ``timeline`` only with ``--timeline``.
With a catalogue (``identify --index``) matches also carry ``spans``, ``record_start_s``, ``record_end_s`` and
``speed``; ``csv`` then has those columns too (``spans`` as ``start-end;start-end``) and ``table`` shows
where in the record and the speed.
"""

from __future__ import annotations

import csv
import json
from typing import TextIO

from serving.matches import SongResult

FORMATS = ("table", "json", "jsonl", "csv")
CSV_FIELDS = ("path", "duration_s", "rank", "sample", "score", "start_s", "end_s", "error")
RETRIEVAL_FIELDS = ("record_start_s", "record_end_s", "speed", "spans")
NO_MATCH = "no known sample"
MAX_PATH_COLUMN = 60


def default_format(stream: TextIO) -> str:
    """``table`` on a terminal, ``jsonl`` otherwise."""
    isatty = getattr(stream, "isatty", None)
    return "table" if isatty is not None and isatty() else "jsonl"


def clock(seconds: float | None) -> str:
    """``m:ss.s`` (or ``h:mm:ss.s``) for the table."""
    if seconds is None:
        return "-"
    minutes, sec = divmod(round(float(seconds), 1), 60.0)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{sec:04.1f}" if hours else f"{minutes}:{sec:04.1f}"


class Writer:
    """Base writer: ``write`` each result as it arrives, ``close`` at the end."""

    def __init__(self, stream: TextIO, paths: list[str], retrieval: bool = False) -> None:
        self.stream = stream
        self.paths = paths
        self.retrieval = retrieval

    def write(self, result: SongResult) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stream.flush()


class JsonlWriter(Writer):
    def write(self, result: SongResult) -> None:
        self.stream.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        self.stream.flush()


class JsonWriter(Writer):
    def __init__(self, stream: TextIO, paths: list[str], retrieval: bool = False) -> None:
        super().__init__(stream, paths, retrieval)
        self.items: list[dict] = []

    def write(self, result: SongResult) -> None:
        self.items.append(result.to_dict())

    def close(self) -> None:
        json.dump(self.items, self.stream, ensure_ascii=False, indent=2)
        self.stream.write("\n")
        super().close()


class CsvWriter(Writer):
    def __init__(self, stream: TextIO, paths: list[str], retrieval: bool = False) -> None:
        super().__init__(stream, paths, retrieval)
        self.csv = csv.writer(stream, lineterminator="\n")
        self.csv.writerow(CSV_FIELDS + (RETRIEVAL_FIELDS if retrieval else ()))

    def write(self, result: SongResult) -> None:
        head = [result.path, result.to_dict()["duration_s"]]
        if not result.matches:
            self.csv.writerow(head + ["", "", "", "", "", result.error or ""]
                              + [""] * (len(RETRIEVAL_FIELDS) if self.retrieval else 0))
        for rank, m in enumerate(result.matches, start=1):
            d = m.to_dict()  # rounded once, as in JSON
            extra = [d.get("record_start_s"), d.get("record_end_s"), d.get("speed"),
                     ";".join(f"{s['start_s']}-{s['end_s']}" for s in d.get("spans") or [])] if self.retrieval else []
            self.csv.writerow(head + [rank, d["sample"], d["score"], d["start_s"], d["end_s"], ""] + extra)
        self.stream.flush()


class TableWriter(Writer):
    def __init__(self, stream: TextIO, paths: list[str], retrieval: bool = False) -> None:
        super().__init__(stream, paths, retrieval)
        self.width = min(MAX_PATH_COLUMN, max([len("path"), *map(len, paths)]))
        self._row("path", "sample", "score", "start", "end", "in record", "speed")

    def _row(self, path: str, sample: str, score: str, start: str, end: str, record: str = "",
             speed: str = "") -> None:
        line = f"{path:<{self.width}}  {sample:<16} {score:>6}  {start:>7}  {end:>7}"
        if self.retrieval:
            line += f"  {record:>15}  {speed:>5}"
        self.stream.write(line.rstrip() + "\n")

    def write(self, result: SongResult) -> None:
        path = result.path
        if result.error is not None:
            self.stream.write(f"{path:<{self.width}}  ERROR: {result.error}\n")
        elif not result.matches:
            self._row(path, NO_MATCH, "", "", "")
        for i, m in enumerate(result.matches):
            record = f"{clock(m.record_start_s)}-{clock(m.record_end_s)}" if m.record_start_s is not None else ""
            speed = f"{m.speed:.2f}" if m.speed is not None else ""
            self._row(path if i == 0 else "", m.sample, f"{m.score:.2f}", clock(m.start_s), clock(m.end_s), record,
                      speed)
        self.stream.flush()


WRITERS: dict[str, type[Writer]] = {"table": TableWriter, "json": JsonWriter, "jsonl": JsonlWriter,
                                     "csv": CsvWriter}


def make_writer(fmt: str, stream: TextIO, paths: list[str], retrieval: bool = False) -> Writer:
    """Writer for ``fmt`` (one of :data:`FORMATS`); ``retrieval`` adds the catalogue's columns to csv/table."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return WRITERS[fmt](stream, paths, retrieval)
