"""The records' log-frequency spectrograms, stored in the catalogue: verification reads no record audio.

``CAT/spectra-<gen>.npy`` holds every record's :func:`serving.verify_align.log_spectrogram`, one after the
other, as float16 ``[frames, BANDS]``; record *i*'s frames are ``[spec_start, spec_end)`` of its entry in
``catalogue.json``. Identify verifies a candidate against a slice of it, so its cost does not depend on how
long the records are or how many the catalogue holds (decoding a whole record per verification, and caching
decoded records, grew with both), and a catalogue keeps answering when the record files move. float16 halves
the file (6 KB per second of record, about the size of the five-scale index at 128-d); its rounding
(about 0.01 on log energies) is below the verifier's peak tolerance.

Catalogues of format 1 had none; they are refused with a line that says to rebuild them.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from serving.catalogue_format import CatalogueError, CatalogueMeta
from serving.contract import atomic_write, one_line
from serving.offset_search import RecordMap
from serving.verify_align import BANDS

SPECTRA_DTYPE = np.float16
SEARCH_MAPS = 256  # records whose offset-search maps are kept


class RecordSpectra:
    """Per-record spectrograms ``[T_i, BANDS]``, held as slices of one array (memory-mapped when read).

    Each record's slice has its own SHA-256 in ``catalogue.json``, checked the first time it is read: opening a
    catalogue never reads the whole file (a thousand hours of records is 22 GB of spectra)."""

    def __init__(self, parts: list[np.ndarray] | None = None, sha256: list[str] | None = None,
                 where: str = "") -> None:
        self.parts = parts if parts is not None else []
        self.sha256 = sha256 if sha256 is not None else [_digest(p) for p in self.parts]
        self.where, self._checked = where, set()
        self._maps: dict[int, RecordMap] = {}  # the offset search's view of each record, built once
        self._maps_lock = threading.Lock()  # the HTTP server's retrieval threads share one catalogue

    def append(self, spec: np.ndarray) -> tuple[int, int, str]:
        """Add the next record's spectrogram; returns its frame range ``[start, end)`` and its SHA-256."""
        start = sum(p.shape[0] for p in self.parts)
        self.parts.append(np.asarray(spec, dtype=SPECTRA_DTYPE))  # [T, BANDS]
        self.sha256.append(_digest(self.parts[-1]))
        return start, start + spec.shape[0], self.sha256[-1]

    def get(self, index: int) -> np.ndarray:
        """Record ``index``'s spectrogram as float32 ``[T, BANDS]``; a :class:`CatalogueError` when its bytes
        differ from the SHA-256 recorded (checked once)."""
        if index not in self._checked:
            if _digest(self.parts[index]) != self.sha256[index]:
                raise CatalogueError(f"the spectra of record {index} in {self.where or 'the catalogue'} are "
                                     "corrupt (SHA-256 differs); rebuild the catalogue")
            self._checked.add(index)
        return np.asarray(self.parts[index], dtype=np.float32)

    def search_map(self, index: int) -> RecordMap:
        """Record ``index`` as :mod:`serving.offset_search` reads it, computed once (the last
        :data:`SEARCH_MAPS` records used are kept)."""
        with self._maps_lock:
            found = self._maps.pop(index, None) or RecordMap.of(self.get(index))
            self._maps[index] = found  # now the most recently used
            if len(self._maps) > SEARCH_MAPS:
                self._maps.pop(next(iter(self._maps)))
            return found

    def save(self, folder: str | os.PathLike, name: str) -> None:
        """Write all spectra atomically as ``folder/name``."""
        frames = np.concatenate(self.parts) if self.parts else np.zeros((0, BANDS), SPECTRA_DTYPE)  # [F, BANDS]
        atomic_write(Path(folder) / name, lambda handle: np.save(handle, frames, allow_pickle=False))

    @classmethod
    def load(cls, folder: str | os.PathLike, meta: CatalogueMeta) -> RecordSpectra:
        """The catalogue's spectra, memory-mapped, checked against the records' frame ranges (the bytes of each
        record are checked when it is first read)."""
        path = Path(folder) / meta.spectra_file
        if not path.is_file():
            raise CatalogueError(f"spectra file missing: {path}")
        try:
            frames = np.load(path, mmap_mode="r", allow_pickle=False)  # [F, BANDS]
        except (OSError, ValueError) as err:
            raise CatalogueError(f"spectra file {path} is corrupt or truncated ({one_line(err)}); rebuild the "
                                 "catalogue") from err
        total = meta.records[-1].spec_end if meta.records else 0
        if frames.ndim != 2 or frames.shape != (total, BANDS) or frames.dtype != SPECTRA_DTYPE:
            raise CatalogueError(f"spectra file {path} is corrupt: shape {frames.shape} {frames.dtype}, expected "
                                 f"({total}, {BANDS}) float16")
        return cls([frames[r.spec_start:r.spec_end] for r in meta.records], [r.spec_sha256 for r in meta.records],
                   str(path))


def _digest(spec: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(spec).tobytes()).hexdigest()


__all__ = ["SPECTRA_DTYPE", "RecordSpectra"]
