"""Read and validate a training manifest (DESIGN.md §2).

A manifest is a CSV file with a header:

- required columns ``song`` (audio path, relative to the manifest's folder) and ``sample`` (the label);
- optional ``split`` (``train``/``val``/``test``, compared by ``serving.contract.split_name``: case and
  surrounding spaces do not matter; other values are skipped with one warning giving the count),
  ``start_s`` and ``end_s`` (where the sample sounds in the song; missing or empty = the whole song);
- any other column is ignored.

Without a ``split`` column every song is ``train``. Without any ``val`` song, a validation split is carved from
``train``, stratified by label: about :data:`VAL_FRACTION` of each label's songs, chosen by a seeded shuffle,
and never a label's last train song (a song that uses several samples moves with all its rows, so it is only
carved when each of its labels keeps another train song).

An optional ``records.csv`` beside the manifest (columns ``sample`` and ``record_path``) points at the full original
recording of each sample. An optional ``sample_path`` (the exact sampled segment) is never required nor used when
``record_path`` is there; older files with ``sample_path`` alone are read as before, that column taken as the
recording. Other columns are ignored.

Every problem found (missing columns, missing or unreadable audio files, bad numbers, a start past the song's
end, val/test labels absent from train, an empty train split, a song in two splits) is collected and raised at
once as :class:`ManifestError`, before any training starts. Only file headers are read here (no decoding).

The column names, the split names and comparison, the path rule and the CSV reading are
``serving.contract``'s, so that ``ast-serve`` tooling reads a manifest exactly as training does.
"""

from __future__ import annotations

import csv
import difflib
import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import soundfile as sf

from serving.contract import (
    MANIFEST_OPTIONAL,
    MANIFEST_REQUIRED,
    SPLITS,
    read_manifest_rows,
    song_path,
    split_name,
)

logger = logging.getLogger(__name__)

SUMMARY_PROBLEMS = 3  # problems named in the one-line summary
RECORD_COLUMNS = ("sample", "record_path")
RECORD_PATH_COLUMNS = ("record_path", "sample_path")  # the recording's column, preferred first (older files)
RECORDS_FILE = "records.csv"
VAL_FRACTION = 0.15  # share of each label's train songs moved to val when the manifest has no val split
VAL_SEED = 0  # fixed so the carved split is the same on every run and every DDP rank
MAX_PROBLEMS_SHOWN = 10
CLOSE_COLUMN_CUTOFF = 0.75  # difflib ratio above which an unknown column is taken for a typo of a known one


class ManifestError(ValueError):
    """The manifest (or records.csv) cannot be used; the message lists the first problems."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        lines = "\n".join(f"  - {p}" for p in shown)
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{path}: {len(problems)} problem(s):\n{lines}{tail}")
        rest = len(problems) - SUMMARY_PROBLEMS
        self.summary = f"{path}: {'; '.join(problems[:SUMMARY_PROBLEMS])}" + (f" (+{rest} more)" if rest > 0 else "")


@dataclass(frozen=True)
class SongEntry:
    """One manifest row.

    Attributes:
        path: absolute path of the song's audio file.
        sample: the label (which sample the song uses).
        split: ``train``, ``val`` or ``test``.
        start_s: where the sample starts sounding in the song, seconds (None = unknown).
        end_s: where it stops, seconds (None = unknown).
    """

    path: Path
    sample: str
    split: str
    start_s: float | None = None
    end_s: float | None = None


@dataclass
class Manifest:
    """A validated manifest.

    Attributes:
        entries: every kept row (train, val and test).
        labels: sorted train labels; the class index is the position in this list.
        records: sample -> absolute path of its original recording (from records.csv; may be empty).
        root: the manifest's folder (paths are relative to it).
    """

    entries: list[SongEntry]
    labels: list[str]
    records: dict[str, Path] = field(default_factory=dict)
    root: Path = Path(".")

    def split(self, name: str) -> list[SongEntry]:
        """Entries of one split (``train``, ``val`` or ``test``), in manifest order."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return [e for e in self.entries if e.split == name]

    def label_index(self) -> dict[str, int]:
        """Label -> class index."""
        return {label: i for i, label in enumerate(self.labels)}


def _parse_time(text: str | None, column: str, where: str, problems: list[str]) -> float | None:
    """Parse an optional seconds value; records a problem on a bad number."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        problems.append(f"{where}: {column}={text!r} is not a number")
        return None
    if value != value or value < 0 or value == float("inf"):
        problems.append(f"{where}: {column}={text!r} must be a finite number >= 0")
        return None
    return value


def _audio_seconds(path: Path, where: str, problems: list[str]) -> float | None:
    """Duration from the file header (cheap: nothing is decoded); records missing/unreadable files."""
    if not path.is_file():
        problems.append(f"{where}: file not found: {path}")
        return None
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError, OSError) as exc:
        problems.append(f"{where}: unreadable audio {path}: {' '.join(str(exc).split())}")
        return None
    if info.frames <= 0:
        problems.append(f"{where}: no audio samples in {path}")
    return info.frames / info.samplerate if info.samplerate else None


def _parse_row(row: dict[str, str | None], line: int, manifest: Path, has_split: bool,
               problems: list[str]) -> SongEntry | None:
    """Turn one CSV row into a SongEntry (None when the row's split is not one of SPLITS)."""
    split = split_name(row.get("split")) if has_split else "train"
    if split not in SPLITS:
        return None
    where = f"line {line}"
    song = (row.get("song") or "").strip()
    sample = (row.get("sample") or "").strip()
    if not song or not sample:
        problems.append(f"{where}: empty song or sample")
        return None
    path = song_path(manifest, song)
    duration = _audio_seconds(path, where, problems)
    start = _parse_time(row.get("start_s"), "start_s", where, problems)
    end = _parse_time(row.get("end_s"), "end_s", where, problems)
    if start is not None and end is not None and end <= start:
        problems.append(f"{where}: end_s={end} must be greater than start_s={start}")
        start = end = None
    if start is not None and duration is not None and start >= duration:
        problems.append(f"{where}: start_s={start} is past the end of the song ({duration:.3f} s)")
    return SongEntry(path=path, sample=sample, split=split, start_s=start, end_s=end)


def _read_rows(path: Path, required: tuple[str, ...], problems: list[str],
               where: str = "") -> tuple[list[str], list[dict]]:
    """Read a CSV with header (column names stripped); records missing required columns as problems.

    ``where`` prefixes each problem: empty for the manifest (its error already names the file), the file's name
    for ``records.csv``.
    """
    try:
        header, raw = read_manifest_rows(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(path, [f"cannot read: {exc}"]) from exc
    columns = [c.strip() for c in header]
    rows = [{k.strip() if isinstance(k, str) else k: v for k, v in row.items()} for row in raw]
    missing = [c for c in required if c not in columns]
    if missing:
        hints = "".join(f"; did you mean {close!r} for {name!r}?" for name in missing
                        for close in _close_column(name, columns)[:1])
        problems.append(f"{where}missing column(s) {', '.join(missing)} (found: {', '.join(columns)}{hints})")
    return columns, rows


def _close_column(name: str, candidates: list[str] | tuple[str, ...]) -> list[str]:
    """Column names that ``name`` was probably meant to be: another case, a prefix (``start`` for ``start_s``),
    or a near spelling."""
    folded = {c.lower(): c for c in candidates}
    if name.lower() in folded:
        return [folded[name.lower()]]
    prefixed = [c for c in candidates if c.lower().startswith(name.lower()) or name.lower().startswith(c.lower())]
    return prefixed or difflib.get_close_matches(name, list(candidates), n=1, cutoff=CLOSE_COLUMN_CUTOFF)


def _warn_unknown_columns(path: Path, columns: list[str]) -> None:
    """Extra columns are ignored; one that looks like a known column (a typo) is warned with the likely name."""
    known = MANIFEST_REQUIRED + MANIFEST_OPTIONAL
    ignored = [c for c in columns if c not in known]
    missing = [c for c in known if c not in columns]
    for name in ignored:
        close = _close_column(name, missing)
        if close:
            logger.warning("%s: unknown column %r is ignored; did you mean %r?", path.name, name, close[0])
    plain = [c for c in ignored if not _close_column(c, missing)]
    if plain:
        logger.debug("%s: ignoring extra column(s) %s", path.name, ", ".join(plain))


def _record_column(path: Path, columns: list[str], problems: list[str]) -> str | None:
    """The column holding the recordings: ``record_path``, else (older files) ``sample_path``; None = problem."""
    if "sample" not in columns or not any(c in columns for c in RECORD_PATH_COLUMNS):
        missing = [c for c in RECORD_COLUMNS if c not in columns]
        hints = "".join(f"; did you mean {close!r} for {name!r}?" for name in missing
                        for close in _close_column(name, columns)[:1])
        problems.append(f"{path.name}: missing column(s) {', '.join(missing)} (found: {', '.join(columns)}{hints})")
        return None
    return next(c for c in RECORD_PATH_COLUMNS if c in columns)


def _load_records(path: Path, problems: list[str]) -> dict[str, Path]:
    """Read records.csv beside the manifest: sample -> absolute path of the full recording."""
    if not path.is_file():
        return {}
    columns, rows = _read_rows(path, (), problems, where=f"{path.name}: ")
    column = _record_column(path, columns, problems)
    if column is None:
        return {}
    records: dict[str, Path] = {}
    for line, row in enumerate(rows, start=2):
        sample, rel = (row.get("sample") or "").strip(), (row.get(column) or "").strip()
        if not sample or not rel:
            problems.append(f"{path.name} line {line}: empty sample or {column}")
            continue
        full = song_path(path, rel)  # relative to records.csv's folder, as songs are to the manifest's
        _audio_seconds(full, f"{path.name} line {line} ({column})", problems)
        records[sample] = full
    return records


def _songs_by_label(entries: list[SongEntry]) -> tuple[dict[str, list[Path]], dict[Path, set[str]]]:
    """Train songs of each label (distinct, sorted by path) and the train labels of each song."""
    songs: dict[str, set[Path]] = defaultdict(set)
    labels: dict[Path, set[str]] = defaultdict(set)
    for e in entries:
        if e.split == "train":
            songs[e.sample].add(e.path)
            labels[e.path].add(e.sample)
    return {label: sorted(paths, key=str) for label, paths in songs.items()}, labels


def carve_val(entries: list[SongEntry], fraction: float = VAL_FRACTION, seed: int = VAL_SEED) -> list[SongEntry]:
    """Move about ``fraction`` of each label's train songs to val, keeping at least one train song per label.

    A song moves with all its rows (it may use several samples), so a song is only picked when every one of
    its labels keeps another train song; songs already moved for an earlier label count towards a label's
    share. Deterministic: each label's songs are sorted by path, then shuffled by a seeded RNG, so the
    result does not depend on the manifest's row order.
    """
    by_label, labels_of = _songs_by_label(entries)
    left = {label: len(songs) for label, songs in by_label.items()}  # train songs each label still has
    moved: set[Path] = set()
    for label in sorted(by_label):
        songs = list(by_label[label])
        n_val = min(len(songs) - 1, max(1, round(fraction * len(songs))))
        random.Random(f"{seed}:{label}").shuffle(songs)
        for path in songs:
            if n_val <= 0:
                break
            if path not in moved:
                if any(left[other] <= 1 for other in labels_of[path]):
                    continue  # it is another label's last train song
                moved.add(path)
                for other in labels_of[path]:
                    left[other] -= 1
            n_val -= 1
    out = [replace(e, split="val") if e.split == "train" and e.path in moved else e for e in entries]
    logger.info("no val split in the manifest: carved %d val songs from train (stratified by label)",
                len(moved))
    return out


def _check_duplicates(entries: list[SongEntry], problems: list[str]) -> None:
    """A song in two splits leaks test data into training (problem); the same song and sample twice in one
    split is only warned. A song on several rows with different samples (it uses several) is fine."""
    splits: dict[Path, set[str]] = defaultdict(set)
    for e in entries:
        splits[e.path].add(e.split)
    for path, names in sorted(splits.items()):
        if len(names) > 1:
            problems.append(f"song listed in several splits ({', '.join(sorted(names))}): {path}")
    pairs = Counter((e.path, e.sample, e.split) for e in entries)
    repeated = sum(1 for c in pairs.values() if c > 1)
    if repeated:
        logger.warning("%d song/sample pair(s) are listed more than once in the same split", repeated)


def _split_summary(entries: list[SongEntry]) -> str:
    """``"3 train, 1 val, 1 test songs"``: distinct songs per split, plus the rows when they differ."""
    songs = {s: len({e.path for e in entries if e.split == s}) for s in SPLITS}
    rows = Counter(e.split for e in entries)
    text = ", ".join(f"{songs[s]} {s}" for s in SPLITS) + " songs"
    if any(rows[s] != songs[s] for s in SPLITS):
        text += " (" + ", ".join(f"{rows[s]} {s}" for s in SPLITS) + " rows)"
    return text


def _check_splits(entries: list[SongEntry], problems: list[str]) -> list[str]:
    """Check split/label consistency; returns the sorted train labels."""
    labels = sorted({e.sample for e in entries if e.split == "train"})
    if not labels:
        problems.append("the train split is empty")
        return labels
    known = set(labels)
    unknown = Counter(e.sample for e in entries if e.split in ("val", "test") and e.sample not in known)
    for label, count in sorted(unknown.items()):
        problems.append(f"label {label!r} appears in val/test ({count} song(s)) but not in train")
    return labels


def load_manifest(path: str | Path, *, carve_fraction: float = VAL_FRACTION) -> Manifest:
    """Load and validate a manifest.

    Args:
        path: the manifest CSV.
        carve_fraction: share of each label's train songs carved into val when there is no val split.

    Returns:
        The validated :class:`Manifest`.

    Raises:
        ManifestError: listing the first problems found (all rows are checked before raising).
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise ManifestError(path, ["manifest file not found"])
    problems: list[str] = []
    columns, rows = _read_rows(path, MANIFEST_REQUIRED, problems)
    if problems:
        raise ManifestError(path, problems)
    _warn_unknown_columns(path, columns)
    has_split = "split" in columns
    entries = []
    for line, row in enumerate(rows, start=2):
        entry = _parse_row(row, line, path, has_split, problems)
        if entry is not None:
            entries.append(entry)
    skipped = sum(1 for r in rows if has_split and split_name(r.get("split")) not in SPLITS)
    if skipped:
        logger.warning("%s: skipped %d row(s) whose split is not one of %s", path.name, skipped, "/".join(SPLITS))
    _check_duplicates(entries, problems)
    records = _load_records(path.parent / RECORDS_FILE, problems)
    if not any(e.split == "val" for e in entries) and carve_fraction > 0:
        entries = carve_val(entries, carve_fraction)
    labels = _check_splits(entries, problems)
    if problems:
        raise ManifestError(path, problems)
    logger.info("%s: %d labels, %s, %d records", path.name, len(labels), _split_summary(entries), len(records))
    return Manifest(entries=entries, labels=labels, records=records, root=path.parent)
