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

import os
from pathlib import Path

import numpy as np

from serving.catalogue_format import CatalogueError, CatalogueMeta, file_sha256
from serving.contract import atomic_write, one_line
from serving.verify_align import BANDS

SPECTRA_DTYPE = np.float16


class RecordSpectra:
    """Per-record spectrograms ``[T_i, BANDS]``, held as slices of one array (memory-mapped when read)."""

    def __init__(self, parts: list[np.ndarray] | None = None) -> None:
        self.parts = parts if parts is not None else []

    def append(self, spec: np.ndarray) -> tuple[int, int]:
        """Add the next record's spectrogram; returns its frame range ``[start, end)``."""
        start = sum(p.shape[0] for p in self.parts)
        self.parts.append(np.asarray(spec, dtype=SPECTRA_DTYPE))  # [T, BANDS]
        return start, start + spec.shape[0]

    def get(self, index: int) -> np.ndarray:
        """Record ``index``'s spectrogram as float32 ``[T, BANDS]``."""
        return np.asarray(self.parts[index], dtype=np.float32)

    def save(self, folder: str | os.PathLike, name: str) -> str:
        """Write all spectra atomically as ``folder/name``; returns the file's SHA-256."""
        frames = np.concatenate(self.parts) if self.parts else np.zeros((0, BANDS), SPECTRA_DTYPE)  # [F, BANDS]
        atomic_write(Path(folder) / name, lambda handle: np.save(handle, frames, allow_pickle=False))
        return file_sha256(Path(folder) / name)

    @classmethod
    def load(cls, folder: str | os.PathLike, meta: CatalogueMeta) -> RecordSpectra:
        """The catalogue's spectra, checked against their SHA-256 and the records' frame ranges."""
        path = Path(folder) / meta.spectra_file
        if not path.is_file():
            raise CatalogueError(f"spectra file missing: {path}")
        if file_sha256(path) != meta.spectra_sha256:
            raise CatalogueError(f"spectra file {path} is corrupt or truncated (SHA-256 differs); rebuild the "
                                 "catalogue")
        try:
            frames = np.load(path, mmap_mode="r", allow_pickle=False)  # [F, BANDS]
        except (OSError, ValueError) as err:
            raise CatalogueError(f"spectra file {path} is corrupt ({one_line(err)})") from err
        total = meta.records[-1].spec_end if meta.records else 0
        if frames.ndim != 2 or frames.shape != (total, BANDS) or frames.dtype != SPECTRA_DTYPE:
            raise CatalogueError(f"spectra file {path} has shape {frames.shape} {frames.dtype}, expected "
                                 f"({total}, {BANDS}) float16")
        return cls([frames[r.spec_start:r.spec_end] for r in meta.records])


__all__ = ["SPECTRA_DTYPE", "RecordSpectra"]
