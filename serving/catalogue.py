"""A catalogue opened for reading: metadata, vector store, id table and calibration, checked against the model.

The layout and the write protocol are in :mod:`serving.catalogue_format`; building and adding records in
:mod:`serving.catalogue_build`; searching in :mod:`serving.retrieval`.

Opening refuses, in one line (:class:`~serving.vectors.CatalogueError`): a folder that is not a catalogue, an
unknown ``format_version``, a file whose SHA-256 differs from the one recorded (corrupt or truncated), and a
model whose ``weights_sha256``, rate or window differ from the catalogue's. Readers take no lock: a writer
replaces ``catalogue.json`` last and atomically, so a reader sees the old catalogue or the new one; if a writer
deletes the old files between our reading ``catalogue.json`` and opening them, we read it once more.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.calibration import Calibration, load_calibration
from serving.catalogue_format import (
    CALIBRATION_FILE,
    CatalogueError,
    CatalogueMeta,
    check_index_file,
    load_ids,
    read_meta,
)
from serving.contract import ModelMetadata, load_audio, one_line
from serving.landmarks import LandmarkIndex
from serving.spectra import RecordSpectra
from serving.vectors import FaissStore

logger = logging.getLogger(__name__)

CACHE_MAX_SAMPLES = 64 * 60 * 16000  # an hour of 16 kHz audio: about 245 MB of decoded records per run
OPEN_ATTEMPTS = 2


def model_sha256(meta: ModelMetadata) -> str:
    """The model's ``weights_sha256``, which ties a catalogue to the weights that embedded it."""
    sha = meta.raw.get("weights_sha256")
    if not isinstance(sha, str) or not sha:
        raise CatalogueError("the model's metadata has no weights_sha256; re-export it with ast-export")
    return sha


def check_model(meta: CatalogueMeta, model: ModelMetadata, folder: str | os.PathLike) -> None:
    """Refuse a model the catalogue was not built with."""
    sha = model_sha256(model)
    if sha != meta.weights_sha256:
        raise CatalogueError(f"{folder} was built with another model (weights_sha256 {meta.weights_sha256[:12]}..., "
                             f"this model {sha[:12]}...); rebuild it with this model or pass the one it was built with")
    if (model.sample_rate, model.window_samples) != (meta.sample_rate, meta.window_samples):
        raise CatalogueError(f"{folder} uses {meta.window_samples}-sample windows at {meta.sample_rate} Hz, the "
                             f"model {model.window_samples} at {model.sample_rate} Hz")


class RecordAudio:
    """Decoded records, cached in memory for one run (least recently used dropped past a sample budget)."""

    def __init__(self, sample_rate: int, max_samples: int = CACHE_MAX_SAMPLES) -> None:
        self.sample_rate, self.max_samples = sample_rate, max_samples
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def put(self, path: str, wave: np.ndarray) -> None:
        self._cache[path] = wave
        self._cache.move_to_end(path)
        while len(self._cache) > 1 and sum(w.shape[0] for w in self._cache.values()) > self.max_samples:
            self._cache.popitem(last=False)

    def get(self, path: str) -> np.ndarray:
        """The decoded record; raises :class:`~serving.contract.AudioError` when it cannot be decoded."""
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        wave = load_audio(path, self.sample_rate)
        self.put(path, wave)
        return wave


@dataclass
class Catalogue:
    """An opened catalogue."""

    folder: Path
    meta: CatalogueMeta
    store: FaissStore
    table: np.ndarray  # [n, 3] int64: record, scale index, start in original samples
    calibration: Calibration
    spectra: RecordSpectra  # each record's log spectrogram, for verification
    landmarks: LandmarkIndex | None = None  # the second candidate source (serving.landmarks); None: embeddings only

    @property
    def scales(self) -> np.ndarray:
        return np.asarray(self.meta.scales, dtype=np.float64)

    @property
    def scale_ratio(self) -> float:
        """Ratio between neighbouring scales (1.12 for the default grid)."""
        s = np.sort(self.scales)
        return float(np.exp(np.mean(np.diff(np.log(s))))) if s.shape[0] > 1 else 1.0

    @classmethod
    def open(cls, folder: str | os.PathLike, model: ModelMetadata | None = None) -> Catalogue:
        """Open and validate ``folder``; with ``model``, refuse one built with another model."""
        for attempt in range(OPEN_ATTEMPTS):
            meta = read_meta(folder)
            if model is not None:
                check_model(meta, model, folder)
            try:
                return cls._load(Path(folder), meta)
            except OSError as err:  # permissions, I/O errors: unusable, in one line
                raise CatalogueError(f"cannot read catalogue {folder}: {one_line(err)}") from err
            except CatalogueError:
                if attempt + 1 == OPEN_ATTEMPTS or read_meta(folder).generation == meta.generation:
                    raise  # not a writer swapping files under us: really broken
        raise AssertionError("unreachable")

    @classmethod
    def _load(cls, folder: Path, meta: CatalogueMeta) -> Catalogue:
        check_index_file(folder, meta)
        table = load_ids(folder, meta)
        store = FaissStore.load(folder, meta.index_file, meta.dim)
        if store.ntotal != meta.ntotal:
            raise CatalogueError(f"{folder}: index holds {store.ntotal} vectors, catalogue.json says {meta.ntotal}")
        cal = load_calibration(folder, CALIBRATION_FILE, meta.generation)
        landmarks = LandmarkIndex.load(folder, meta.landmarks_file, meta.landmarks_sha256) if meta.landmarks_file else None
        return cls(folder, meta, store, table, cal, RecordSpectra.load(folder, meta), landmarks)

    def record_of(self, name: str) -> int | None:
        return next((i for i, r in enumerate(self.meta.records) if r.name == name), None)

    def info(self) -> dict[str, Any]:
        """What ``ast-serve index info`` prints."""
        meta, cal = self.meta, self.calibration
        return {
            "path": str(self.folder), "format_version": meta.format_version, "records": len(meta.records),
            "windows": self.store.ntotal, "index": self.store.kind, "bytes": _folder_bytes(self.folder),
            "index_bytes": self.store.nbytes, "dim": meta.dim,
            "landmarks": self.landmarks.size if self.landmarks is not None else None, "scales": meta.scales,
            "hop_s": round(meta.hop_s, 4), "window_s": round(meta.window_s, 4), "sample_rate": meta.sample_rate,
            "weights_sha256": meta.weights_sha256, "model_path": meta.model_path,
            "calibration": {"far": cal.far, "threshold": cal.threshold, "raw_threshold": round(cal.raw_threshold, 4),
                            "null_queries": len(cal.null_scores), "kinds": cal.queries},
            "record_names": [r.name for r in meta.records],
        }


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
