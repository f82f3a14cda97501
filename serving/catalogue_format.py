"""The catalogue folder on disk: ``catalogue.json`` (validated), the id table, the write lock and clean-up.

A catalogue is one folder ``CAT/``::

    CAT/catalogue.json        what is indexed (below); replaced last, atomically, by every build/add
    CAT/calibration.json      the null-score distribution and the threshold (serving.calibration)
    CAT/vectors-<gen>.faiss   the FAISS index (serving.vectors); a fresh name per write
    CAT/ids-<gen>.npy         int64 [n, 3]: record index, scale index, window start in the original record's
                              samples; row i describes vector id i
    CAT/spectra-<gen>.npy     float16 [frames, bands]: every record's log spectrogram (serving.spectra), so
                              verification reads no record audio
    CAT/landmarks-<gen>.npz   the records' spectral-peak triplets (serving.landmarks), a second candidate
                              source; absent past serving.landmarks.MAX_HOURS of records
    CAT/.lock                 held (fcntl.flock, exclusive, non-blocking) by the one writer

``catalogue.json`` holds ``format_version``, ``generation`` (the token of the files it points at), the model's
``weights_sha256`` (and the model path used, as a default for ``index add``), ``sample_rate``,
``window_samples``, ``hop_samples``, ``scales``, ``dim``, the index and id-table file names with their
SHA-256, the spectra file's name, and per record ``name``, ``path``, ``duration_s``, ``sha256`` (of the decoded
audio), the id range ``[id_start, id_end)``, and the spectrogram frame range ``[spec_start, spec_end)`` with the
SHA-256 of those frames (checked when the record is first verified against), and the landmark file's name
and SHA-256 (empty when it has none). Format 1 (before the spectra) is refused with a line that says to
rebuild; format 2 (before the landmarks) is read as a catalogue without landmarks. A killed writer leaves the previous ``catalogue.json`` pointing at
the previous files, which are only deleted once the new ``catalogue.json`` is in place.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.contract import atomic_write, one_line, remove_stale_temps

logger = logging.getLogger(__name__)

CATALOGUE_FORMAT = 3
KNOWN_CATALOGUE_FORMATS = (2, 3)
CATALOGUE_FILE = "catalogue.json"
CALIBRATION_FILE = "calibration.json"
LOCK_FILE = ".lock"
INDEX_PREFIX, INDEX_SUFFIX = "vectors-", ".faiss"
IDS_PREFIX, IDS_SUFFIX = "ids-", ".npy"
SPECTRA_PREFIX, SPECTRA_SUFFIX = "spectra-", ".npy"
LANDMARKS_PREFIX, LANDMARKS_SUFFIX = "landmarks-", ".npz"
GENERATION_FILES = ((INDEX_PREFIX, INDEX_SUFFIX), (IDS_PREFIX, IDS_SUFFIX), (SPECTRA_PREFIX, SPECTRA_SUFFIX),
                    (LANDMARKS_PREFIX, LANDMARKS_SUFFIX))
ID_COLUMNS = 3  # record index, scale index, start in original samples
HASH_BLOCK = 1 << 20


class CatalogueError(Exception):
    """A catalogue (or one of its files) cannot be used; ``str(err)`` is one actionable line."""


@dataclass
class RecordEntry:
    """One indexed record."""

    name: str
    path: str
    duration_s: float
    sha256: str
    id_start: int
    id_end: int
    spec_start: int
    spec_end: int
    spec_sha256: str


@dataclass
class CatalogueMeta:
    """The validated content of ``catalogue.json``."""

    weights_sha256: str
    sample_rate: int
    window_samples: int
    hop_samples: int
    scales: list[float]
    dim: int
    generation: str = ""
    index_file: str = ""
    index_sha256: str = ""
    ids_file: str = ""
    ids_sha256: str = ""
    spectra_file: str = ""
    landmarks_file: str = ""  # "": none (format 2, or more than serving.landmarks.MAX_HOURS of records)
    landmarks_sha256: str = ""
    model_path: str = ""
    records: list[RecordEntry] = field(default_factory=list)
    format_version: int = CATALOGUE_FORMAT

    @property
    def hop_s(self) -> float:
        return self.hop_samples / self.sample_rate

    @property
    def window_s(self) -> float:
        return self.window_samples / self.sample_rate

    @property
    def ntotal(self) -> int:
        return self.records[-1].id_end if self.records else 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def new_generation() -> str:
    """A fresh token for the file names of one write."""
    return secrets.token_hex(6)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def read_meta(folder: str | os.PathLike) -> CatalogueMeta:
    """Read and validate ``folder/catalogue.json``; anything unusable is a one-line :class:`CatalogueError`."""
    path = Path(folder) / CATALOGUE_FILE
    if not Path(folder).is_dir():
        raise CatalogueError(f"catalogue folder not found: {folder} (build one with `ast-serve index build`)")
    if not path.is_file():
        raise CatalogueError(f"{folder} is not a catalogue: no {CATALOGUE_FILE}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CatalogueError(f"{path} is corrupt ({one_line(err)}); rebuild with `ast-serve index build`") from err
    if not isinstance(raw, dict):
        raise CatalogueError(f"{path} is corrupt (not a JSON object)")
    version = raw.get("format_version")
    if version == 1:
        raise CatalogueError(f"{path}: catalogue format 1 predates the stored record spectrograms; rebuild it "
                             "with `ast-serve index build`")
    if version not in KNOWN_CATALOGUE_FORMATS:
        raise CatalogueError(f"{path}: unknown catalogue format_version {version!r} (this ast-serve reads "
                             f"{', '.join(map(str, KNOWN_CATALOGUE_FORMATS))}); upgrade ast-serve or rebuild")
    try:
        records = [RecordEntry(**r) for r in raw.pop("records")]
        meta = CatalogueMeta(records=records, **raw)
    except (KeyError, TypeError) as err:
        raise CatalogueError(f"{path} is corrupt (bad fields: {one_line(err)})") from err
    _check_ranges(meta, path)
    return meta


def _check_ranges(meta: CatalogueMeta, path: Path) -> None:
    for what in ("id", "spec"):
        expected = 0
        for rec in meta.records:
            start, end = getattr(rec, f"{what}_start"), getattr(rec, f"{what}_end")
            if start != expected or end < start:
                raise CatalogueError(f"{path} is corrupt (record {rec.name!r} has {what} range "
                                     f"[{start}, {end}) after {expected})")
            expected = end
    if not meta.scales or any(not s > 0 for s in meta.scales):
        raise CatalogueError(f"{path} is corrupt (scales {meta.scales!r})")


def write_meta(folder: str | os.PathLike, meta: CatalogueMeta) -> None:
    """Replace ``catalogue.json`` atomically: the step that makes a new build or add visible."""
    text = json.dumps(meta.to_json(), indent=1, ensure_ascii=False).encode("utf-8")
    atomic_write(Path(folder) / CATALOGUE_FILE, lambda handle: handle.write(text))


def save_ids(folder: str | os.PathLike, name: str, table: np.ndarray) -> str:
    """Write the id table ``[n, 3]`` int64 atomically as ``folder/name``; returns its SHA-256."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(table, dtype=np.int64), allow_pickle=False)
    data = buffer.getvalue()
    atomic_write(Path(folder) / name, lambda handle: handle.write(data))
    return hashlib.sha256(data).hexdigest()


def load_ids(folder: str | os.PathLike, meta: CatalogueMeta) -> np.ndarray:
    """The id table, checked against its SHA-256 and the record id ranges."""
    path = Path(folder) / meta.ids_file
    if not path.is_file():
        raise CatalogueError(f"id table missing: {path}")
    if file_sha256(path) != meta.ids_sha256:
        raise CatalogueError(f"id table {path} is corrupt or truncated (SHA-256 differs); rebuild the catalogue")
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise CatalogueError(f"id table {path} is corrupt ({one_line(err)})") from err
    if table.ndim != 2 or table.shape != (meta.ntotal, ID_COLUMNS) or table.dtype != np.int64:
        raise CatalogueError(f"id table {path} has shape {table.shape}, expected ({meta.ntotal}, {ID_COLUMNS})")
    return table


def check_index_file(folder: str | os.PathLike, meta: CatalogueMeta) -> None:
    """Refuse an index file whose SHA-256 differs from the one recorded (bit rot, truncation, a foreign file)."""
    path = Path(folder) / meta.index_file
    if not path.is_file():
        raise CatalogueError(f"index file missing: {path}")
    if file_sha256(path) != meta.index_sha256:
        raise CatalogueError(f"index file {path} is corrupt or truncated (SHA-256 differs); rebuild the catalogue")


@contextmanager
def write_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``folder/.lock`` exclusively for one writer; a second writer fails at once, in one line."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(folder) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise CatalogueError(f"{folder} is being written by another process (lock {LOCK_FILE} held); "
                                 "retry when it finishes") from err
        yield
    finally:
        os.close(fd)  # closing releases the lock


def clean_folder(folder: str | os.PathLike, keep: CatalogueMeta | None) -> None:
    """Delete temp files and index/id/spectra files that ``keep`` (the current catalogue) does not reference.

    Only call it under :func:`write_lock`: it removes what an interrupted (or this very) writer left.
    """
    folder = Path(folder)
    remove_stale_temps(folder, [CATALOGUE_FILE, CALIBRATION_FILE])
    referenced = {keep.index_file, keep.ids_file, keep.spectra_file, keep.landmarks_file} if keep is not None else set()
    for path in sorted(folder.iterdir()):
        name = path.name
        ours = any(name.startswith(prefix) and name.endswith(suffix) for prefix, suffix in GENERATION_FILES) or \
            (name.startswith(tuple(f".{prefix}" for prefix, _ in GENERATION_FILES)) and name.endswith(".tmp"))
        if ours and name not in referenced and path.is_file():
            logger.debug("removing unreferenced %s", path)
            path.unlink(missing_ok=True)
