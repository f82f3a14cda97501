"""Build a catalogue from full records, or add records to one: decode, time-scale, embed, index, calibrate, commit.

Each whole record is resampled (soxr) to play at every speed of the time-scale grid (:data:`DEFAULT_SCALES`,
x0.80 to x1.25 in five geometric steps of 1.12, so any speed between about x0.75 and x1.33 is within half a
step of one), and windows every hop (default: the model's hop, at most :data:`MAX_INDEX_HOP_S`) at each speed
are embedded in batches and added with ids; the id table maps each id back to (record, scale, window start in
the *original* record's samples).

A write (build or add) runs under the folder's exclusive lock and commits in this order: the index and id
table under fresh names, then ``calibration.json``, then ``catalogue.json`` (atomic rename: the moment the new
catalogue becomes visible), then the files no longer referenced are deleted. A write killed at any point
leaves the previous catalogue usable; the next write removes what it left behind.

A record that cannot be decoded is one line on stderr (``path: reason``); the others are still indexed and
the report says how many failed (the CLI exits 1).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr

from serving.calibration import DEFAULT_FAR, calibrate, null_queries, save_calibration
from serving.catalogue import Catalogue, RecordAudio, check_model, model_sha256
from serving.catalogue_format import (
    CALIBRATION_FILE,
    CATALOGUE_FORMAT,
    IDS_PREFIX,
    IDS_SUFFIX,
    INDEX_PREFIX,
    INDEX_SUFFIX,
    LANDMARKS_PREFIX,
    LANDMARKS_SUFFIX,
    SPECTRA_PREFIX,
    SPECTRA_SUFFIX,
    CatalogueError,
    CatalogueMeta,
    RecordEntry,
    clean_folder,
    file_sha256,
    new_generation,
    read_meta,
    save_ids,
    write_lock,
    write_meta,
)
from serving.contract import INDEX_SCALES, AudioError, load_audio, one_line, show_progress
from serving.embedding import DEFAULT_BATCH, embed_wave
from serving.landmarks import MAX_HOURS, RES, LandmarkIndex
from serving.retrieval import Retriever
from serving.session import ModelSession
from serving.spectra import RecordSpectra
from serving.vectors import FaissStore
from serving.verify_align import log_spectrogram

logger = logging.getLogger(__name__)

DEFAULT_SCALES = INDEX_SCALES  # the contract's: training anchors its fingerprint pairs on the same grid
MAX_INDEX_HOP_S = 0.5
RESAMPLE_QUALITY = "HQ"


@dataclass
class RecordSource:
    """A record to index: its name (the ``sample`` label) and its audio file."""

    name: str
    path: str


@dataclass
class BuildOptions:
    """Options of ``index build`` / ``index add``.

    Attributes:
        hop_s: index hop in seconds (None: the model's hop, at most :data:`MAX_INDEX_HOP_S`).
        scales: time-scales indexed (``build`` only; ``add`` keeps the catalogue's).
        batch_size: windows per inference call.
        far: the default false-accept rate stored with the calibration.
        progress: show a tqdm bar on stderr.
    """

    hop_s: float | None = None
    scales: tuple[float, ...] = DEFAULT_SCALES
    batch_size: int = DEFAULT_BATCH
    far: float = DEFAULT_FAR
    progress: bool = False


@dataclass
class BuildReport:
    """What a write did."""

    indexed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    windows: int = 0


def read_records_csv(path: str | os.PathLike) -> list[RecordSource]:
    """Records from a CSV with columns ``sample`` and ``record_path`` (relative to the CSV's folder).

    Other columns (``sample_path``, ``source_file``, ...) are ignored: the catalogue holds full records only.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows, header = list(reader), reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise CatalogueError(f"cannot read records CSV {path}: {one_line(err)}") from err
    missing = [c for c in ("sample", "record_path") if c not in header]
    if missing:
        raise CatalogueError(f"records CSV {path} lacks column(s) {', '.join(missing)} (has: {', '.join(header)})")
    base = Path(path).resolve().parent
    return [RecordSource(row["sample"].strip(), str((base / row["record_path"].strip()).resolve()))
            for row in rows if (row.get("sample") or "").strip() and (row.get("record_path") or "").strip()]


def sources_from_audio(paths: list[str]) -> list[RecordSource]:
    """Bare audio files as records, each named by its file stem."""
    return [RecordSource(Path(p).stem, str(Path(p).resolve())) for p in paths]


def unique_sources(sources: list[RecordSource]) -> tuple[list[RecordSource], list[str]]:
    """Drop repeated (name, path) pairs; a name given twice with different files is an error line."""
    seen: dict[str, str] = {}
    kept, errors = [], []
    for src in sources:
        if src.name in seen:
            if seen[src.name] != src.path:
                errors.append(f"{src.path}: record name {src.name!r} is already used by {seen[src.name]}")
            continue
        seen[src.name] = src.path
        kept.append(src)
    return kept, errors


def index_hop(session: ModelSession, hop_s: float | None) -> int:
    """The index hop in samples: ``hop_s``, else the model's hop capped at :data:`MAX_INDEX_HOP_S`."""
    meta = session.metadata
    if hop_s is not None:
        return max(1, round(hop_s * meta.sample_rate))
    return min(meta.hop_samples, round(MAX_INDEX_HOP_S * meta.sample_rate))


def embed_record(session: ModelSession, wave: np.ndarray, hop: int, scales: list[float],
                 batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of a record at every time-scale: ``(vectors [n, d], rows [n, 2] = scale index, start)``.

    ``start`` is the window's start in the original record's samples (window start at speed s, times s).
    """
    rate = session.metadata.sample_rate
    vecs, rows = [], []
    for si, scale in enumerate(scales):
        scaled = wave if scale == 1.0 else soxr.resample(wave, rate, rate / scale, quality=RESAMPLE_QUALITY)
        starts, emb = embed_wave(session, np.asarray(scaled, dtype=np.float32), hop, batch_size)
        vecs.append(emb)
        rows.append(np.stack([np.full(starts.shape[0], si), np.round(starts * scale)], 1).astype(np.int64))
    return np.concatenate(vecs), np.concatenate(rows)


class _Writer:
    """One build or add in progress: the store, the id table and the records, then the commit."""

    def __init__(self, session: ModelSession, folder: Path, meta: CatalogueMeta, store: FaissStore,
                 table: np.ndarray, spectra: RecordSpectra, opts: BuildOptions,
                 landmarks: LandmarkIndex | None) -> None:
        self.session, self.folder, self.meta, self.store, self.opts = session, folder, meta, store, opts
        self.spectra = RecordSpectra(list(spectra.parts), list(spectra.sha256))  # an add appends to the current
        self.landmarks = landmarks  # None: the catalogue answers by its embeddings alone
        self.tables = [table]
        self.audio = RecordAudio(session.metadata.sample_rate)
        self.report = BuildReport()

    def add_records(self, sources: list[RecordSource]) -> None:
        from tqdm import tqdm

        known = {r.name: r for r in self.meta.records}
        for src in tqdm(sources, unit="record", file=sys.stderr, disable=not (self.opts.progress and show_progress(logger)), leave=False):
            try:
                wave = load_audio(src.path, self.meta.sample_rate)
            except AudioError as err:
                logger.error("%s: %s", src.path, err)
                self.report.failed.append(src.path)
                continue
            sha = hashlib.sha256(wave.tobytes()).hexdigest()
            if src.name in known:
                self._already_known(known[src.name], src, sha)
                continue
            self._add_one(src, wave, sha)

    def _already_known(self, entry: RecordEntry, src: RecordSource, sha: str) -> None:
        if entry.sha256 == sha:
            logger.info("%s: record %r is already indexed (same audio); skipped", src.path, src.name)
            self.report.skipped.append(src.name)
        else:
            logger.error("%s: record %r is already indexed with other audio; rebuild to replace it",
                         src.path, src.name)
            self.report.failed.append(src.path)

    def _add_one(self, src: RecordSource, wave: np.ndarray, sha: str) -> None:
        vecs, rows = embed_record(self.session, wave, self.meta.hop_samples, self.meta.scales, self.opts.batch_size)
        if vecs.shape[0] == 0:
            logger.warning("%s: no window of record %r has a usable embedding (silent?); it cannot be found",
                           src.path, src.name)
        start = self.meta.ntotal
        index = len(self.meta.records)
        ids = np.arange(start, start + vecs.shape[0], dtype=np.int64)
        self.store.add(ids, vecs)
        self.tables.append(np.concatenate([np.full((rows.shape[0], 1), index, dtype=np.int64), rows], 1))
        spectrum = self.spectra.append(log_spectrogram(wave, self.meta.sample_rate))
        if self.landmarks is not None:
            self.landmarks.add(index, log_spectrogram(wave, self.meta.sample_rate, RES))
        self.meta.records.append(RecordEntry(src.name, src.path, round(wave.shape[0] / self.meta.sample_rate, 3),
                                             sha, start, start + vecs.shape[0], *spectrum))
        self.audio.put(src.path, wave)
        self.report.indexed.append(src.name)
        self.report.windows += int(vecs.shape[0])

    def commit(self) -> None:
        """Write index, ids, calibration, then catalogue.json; delete what is no longer referenced."""
        meta, gen = self.meta, new_generation()
        table = np.concatenate(self.tables)  # [n, 3]
        meta.generation, meta.format_version = gen, CATALOGUE_FORMAT
        meta.index_file, meta.ids_file = f"{INDEX_PREFIX}{gen}{INDEX_SUFFIX}", f"{IDS_PREFIX}{gen}{IDS_SUFFIX}"
        meta.spectra_file = f"{SPECTRA_PREFIX}{gen}{SPECTRA_SUFFIX}"
        self.store.save(self.folder, meta.index_file)
        meta.index_sha256 = file_sha256(self.folder / meta.index_file)
        meta.ids_sha256 = save_ids(self.folder, meta.ids_file, table)
        self.spectra.save(self.folder, meta.spectra_file)
        self._save_landmarks(gen)
        cal = self._calibrate(table)
        save_calibration(self.folder, cal, CALIBRATION_FILE)
        write_meta(self.folder, meta)
        clean_folder(self.folder, meta)

    def _save_landmarks(self, gen: str) -> None:
        """Write the landmarks, or drop them once the records exceed :data:`~serving.landmarks.MAX_HOURS`."""
        meta = self.meta
        hours = sum(r.duration_s for r in meta.records) / 3600
        if self.landmarks is not None and hours > MAX_HOURS:
            logger.warning("the catalogue holds %.1f h of records, past the %.0f h that landmarks are kept for: "
                           "it answers by its embeddings alone from now on", hours, MAX_HOURS)
            self.landmarks = None
        if self.landmarks is None:
            meta.landmarks_file = meta.landmarks_sha256 = ""
            return
        meta.landmarks_file = f"{LANDMARKS_PREFIX}{gen}{LANDMARKS_SUFFIX}"
        meta.landmarks_sha256 = self.landmarks.save(self.folder, meta.landmarks_file)

    def _calibrate(self, table: np.ndarray):
        cat = Catalogue(self.folder, self.meta, self.store, table, None, self.spectra,  # type: ignore[arg-type]
                        self.landmarks)
        retriever = Retriever(self.session, cat)
        records = self.meta.records

        def audio(index: int) -> np.ndarray | None:
            try:
                return self.audio.get(records[index].path)
            except AudioError as err:
                logger.warning("%s: not used for calibration (%s)", records[index].path, err)
                return None

        queries = null_queries(len(records), audio, lambda i: (records[i].id_start, records[i].id_end),
                               self.meta.window_samples, self.meta.hop_samples, self.meta.sample_rate)
        return calibrate(retriever.null_score, queries, self.opts.far, self.meta.generation)


def build_catalogue(session: ModelSession, sources: list[RecordSource], folder: str | os.PathLike,
                    options: BuildOptions | None = None, model_path: str = "") -> BuildReport:
    """Build (or rebuild) the catalogue in ``folder`` from ``sources``.

    Raises:
        CatalogueError: the folder is locked by another writer, or no record could be indexed.
    """
    opts = options or BuildOptions()
    folder = Path(folder)
    model = session.metadata
    sources, dup_errors = unique_sources(sources)
    with write_lock(folder):
        clean_folder(folder, _current(folder))
        meta = CatalogueMeta(model_sha256(model), model.sample_rate, model.window_samples,
                             index_hop(session, opts.hop_s), list(opts.scales), 0, model_path=model_path)
        writer = _Writer(session, folder, meta, FaissStore(_dim(session)), np.zeros((0, 3), np.int64),
                         RecordSpectra(), opts, LandmarkIndex())
        meta.dim = writer.store.dim
        for line in dup_errors:
            logger.error("%s", line)
            writer.report.failed.append(line.split(": ", 1)[0])
        writer.add_records(sources)
        if not writer.report.indexed:
            raise CatalogueError(f"no record could be indexed; {folder} is unchanged")
        writer.commit()
    return writer.report


def add_to_catalogue(session: ModelSession, folder: str | os.PathLike, sources: list[RecordSource],
                     options: BuildOptions | None = None) -> BuildReport:
    """Add ``sources`` to the catalogue in ``folder`` (no rebuild); the calibration is redone."""
    opts = options or BuildOptions()
    folder = Path(folder)
    sources, dup_errors = unique_sources(sources)
    with write_lock(folder):
        cat = Catalogue.open(folder, session.metadata)
        clean_folder(folder, cat.meta)
        writer = _Writer(session, folder, cat.meta, cat.store, cat.table, cat.spectra, opts, cat.landmarks)
        for line in dup_errors:
            logger.error("%s", line)
            writer.report.failed.append(line.split(": ", 1)[0])
        writer.add_records(sources)
        if writer.report.indexed:
            writer.commit()
    return writer.report


def _current(folder: Path) -> CatalogueMeta | None:
    try:
        return read_meta(folder)
    except CatalogueError:
        return None


def _dim(session: ModelSession) -> int:
    window = session.metadata.window_samples
    _, emb = session.run(np.zeros((1, window), dtype=np.float32))
    return int(emb.shape[1])


__all__ = ["BuildOptions", "BuildReport", "DEFAULT_SCALES", "RecordSource", "add_to_catalogue", "build_catalogue",
           "check_model", "read_records_csv", "sources_from_audio"]
