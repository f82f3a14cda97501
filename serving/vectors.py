"""The vector store behind the catalogue: ids (int64) -> L2-normalised float32 vectors, searched by inner product.

:class:`VectorStore` is the small interface the catalogue uses; :class:`FaissStore` implements it with FAISS
(CPU). A distributed store (a sharded FAISS service, a vector database) could replace it later by implementing
the same six members; nothing else in ``serving`` touches FAISS.

Index type by size, as FAISS's own guidelines advise:

- up to :data:`FLAT_MAX_VECTORS` vectors (2,000,000: 1 GB at 128-d): ``IndexIDMap2(IndexFlatIP)``, exact
  search, records added without a rebuild;
- past it: ``IndexIVFPQ`` over inner product (``nlist`` about ``4 sqrt(n)`` cells, ``d/4`` sub-quantisers of
  8 bits), trained on the vectors themselves when the store is built or first grows past the threshold;
  ``nprobe`` (:data:`DEFAULT_NPROBE`) is set at search time.

Files are written with ``faiss.write_index`` to a temp name, fsynced and renamed, so a killed write never
leaves a half file under the final name. A file FAISS cannot read is a one-line :class:`CatalogueError`.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from serving.catalogue_format import CatalogueError

logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise at INFO
import faiss  # noqa: E402

logger = logging.getLogger(__name__)

FLAT_MAX_VECTORS = 2_000_000  # exact search up to here; IVF-PQ beyond (see the README)
DEFAULT_NPROBE = 32  # IVF cells visited per query
IVF_CELLS_PER_SQRT = 4  # nlist = 4 * sqrt(n)
IVF_MIN_POINTS_PER_CELL = 39  # FAISS's k-means wants >= 39 training points per centroid
PQ_DIMS_PER_SUBQUANTIZER = 4
PQ_BITS = 8
FLAT_BLOCK_FLOATS = 1 << 23  # flat search scores the database in blocks of at most this many similarities
MAX_TRAIN_POINTS = 500_000  # IVF-PQ training sample (k-means cost grows with it)
TRAIN_SEED = 1234


class VectorStore(Protocol):
    """What the catalogue needs from a vector store."""

    @property
    def ntotal(self) -> int: ...

    @property
    def nbytes(self) -> int: ...

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int,
               exclude: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def save(self, folder: str | os.PathLike, name: str) -> Path: ...


class FaissStore:
    """A FAISS index (flat inner product, or IVF-PQ past :data:`FLAT_MAX_VECTORS`) with explicit int64 ids."""

    def __init__(self, dim: int, index: faiss.Index | None = None, nprobe: int = DEFAULT_NPROBE) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim, self.nprobe = dim, nprobe
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._ids: np.ndarray | None = None  # the flat store's ids by row, read once after each add

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def kind(self) -> str:
        return "ivfpq" if self._ivf() is not None else "flat"

    @property
    def nbytes(self) -> int:
        """Approximate memory (and file) size of the index."""
        ivf = self._ivf()
        if ivf is None:
            return self.ntotal * (self.dim * 4 + 8)
        return self.ntotal * (ivf.code_size + 8) + ivf.nlist * self.dim * 4 + self.dim * (1 << PQ_BITS) * 4

    def _ivf(self) -> faiss.IndexIVF | None:
        try:
            return faiss.extract_index_ivf(self.index)
        except RuntimeError:
            return None

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        """Add ``vecs`` ``[n, d]`` under ``ids`` ``[n]``; a flat store turns IVF-PQ once it outgrows the threshold."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)  # [n]
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)  # [n, d]
        if vecs.ndim != 2 or vecs.shape[1] != self.dim or ids.shape != (vecs.shape[0],):
            raise ValueError(f"expected ids [n] and vectors [n, {self.dim}], got {ids.shape} and {vecs.shape}")
        if ids.size == 0:
            return
        self._ids = None
        if self._ivf() is None and self.ntotal + ids.size > FLAT_MAX_VECTORS:
            old_ids, old_vecs = self._flat_contents()
            ids, vecs = np.concatenate([old_ids, ids]), np.concatenate([old_vecs, vecs])
            self.index = _train_ivfpq(vecs, self.dim)
        self.index.add_with_ids(vecs, ids)

    def _flat_contents(self) -> tuple[np.ndarray, np.ndarray]:
        ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)  # [n]
        vecs = self.index.index.reconstruct_n(0, self.ntotal)  # [n, d]
        return ids, vecs

    def search(self, queries: np.ndarray, k: int,
               exclude: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest ids by inner product: ``(sims [m, k], ids [m, k])``, ``-1`` ids where fewer exist.

        Args:
            queries: float32 ``[m, d]``.
            k: neighbours per query.
            exclude: an id range ``[lo, hi)`` to leave out (leave-one-out calibration).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)  # [m, d]
        if self.kind == "flat" and isinstance(self.index, faiss.IndexIDMap2):
            return self._flat_search(queries, k, exclude)
        sel = None if exclude is None else faiss.IDSelectorNot(faiss.IDSelectorRange(*map(int, exclude)))
        ivf = self._ivf()
        if ivf is not None:
            params = faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe)
        else:
            params = faiss.SearchParameters(sel=sel) if sel is not None else None
        sims, ids = self.index.search(queries, k, params=params)
        return sims, ids

    def _flat_search(self, queries: np.ndarray, k: int,
                     exclude: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact search by blocked BLAS products and partial sorts: the same neighbours as FAISS's flat search,
        several times faster for a song's batch of windows (bench/NOTES.md #26)."""
        n, m = self.ntotal, queries.shape[0]
        if n == 0:
            return np.full((m, k), -np.finfo(np.float32).max, dtype=np.float32), np.full((m, k), -1, dtype=np.int64)
        flat = faiss.downcast_index(self.index.index)
        base = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)  # [n, d], a view
        if self._ids is None:  # add() drops it
            self._ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)  # [n]
        sims = np.full((m, k), -np.inf, dtype=np.float32)  # [m, k] best so far
        rows = np.full((m, k), -1, dtype=np.int64)  # [m, k]
        block = max(1024, FLAT_BLOCK_FLOATS // max(m, 1))
        for lo in range(0, n, block):
            scores = queries @ base[lo:lo + block].T  # [m, b]
            if exclude is not None:
                ids = self._ids[lo:lo + block]  # [b]
                scores[:, (ids >= exclude[0]) & (ids < exclude[1])] = -np.inf
            top = _top_k(scores, k)  # [m, k'] block rows
            sims, rows = _merge(sims, rows, np.take_along_axis(scores, top, axis=1), top + lo, k)
        order = np.argsort(-sims, axis=1, kind="stable")  # [m, k] best first
        sims, rows = np.take_along_axis(sims, order, axis=1), np.take_along_axis(rows, order, axis=1)
        missing = ~np.isfinite(sims) | (rows < 0)  # [m, k]
        ids = np.where(missing, -1, self._ids[np.maximum(rows, 0)])  # [m, k]
        return np.where(missing, np.float32(-np.finfo(np.float32).max), sims), ids

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (exact for the flat store)."""
        return np.stack([self.index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, self.dim))

    def save(self, folder: str | os.PathLike, name: str) -> Path:
        """Write ``folder/name`` atomically (temp file, fsync, rename)."""
        path = Path(folder) / name
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        try:
            faiss.write_index(self.index, str(tmp))
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike, name: str, dim: int) -> FaissStore:
        """Read ``folder/name``; a missing, truncated or foreign file is a :class:`CatalogueError`."""
        path = Path(folder) / name
        if not path.is_file():
            raise CatalogueError(f"index file missing: {path}")
        try:
            index = faiss.read_index(str(path))
        except (RuntimeError, MemoryError) as err:
            raise CatalogueError(f"index file {path} is corrupt or truncated; rebuild with "
                                 "`ast-serve index build`") from err
        if index.d != dim:
            raise CatalogueError(f"index file {path} holds {index.d}-d vectors, the catalogue says {dim}")
        return cls(dim, index)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest ``scores`` per row ``[m, min(k, b)]``, in no order."""
    if scores.shape[1] <= k:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return np.argpartition(scores, -k, axis=1)[:, -k:]


def _merge(sims: np.ndarray, rows: np.ndarray, new_sims: np.ndarray, new_rows: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` per query of two candidate lists ``[m, *]``."""
    sims, rows = np.concatenate([sims, new_sims], axis=1), np.concatenate([rows, new_rows], axis=1)
    top = _top_k(sims, k)  # [m, k]
    return np.take_along_axis(sims, top, axis=1), np.take_along_axis(rows, top, axis=1)


def _train_ivfpq(vecs: np.ndarray, dim: int) -> faiss.Index:
    """An untrained-then-trained ``IndexIVFPQ`` (inner product) sized for ``vecs``."""
    n = vecs.shape[0]
    nlist = max(1, min(int(IVF_CELLS_PER_SQRT * math.sqrt(n)), n // IVF_MIN_POINTS_PER_CELL))
    m = _subquantizers(dim)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, PQ_BITS, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(TRAIN_SEED)
    train = vecs if n <= MAX_TRAIN_POINTS else vecs[rng.choice(n, MAX_TRAIN_POINTS, replace=False)]
    logger.info("training IVF-PQ (nlist %d, %d x %d bits) on %d vectors", nlist, m, PQ_BITS, train.shape[0])
    index.train(np.ascontiguousarray(train, dtype=np.float32))
    return index


def _subquantizers(dim: int) -> int:
    """The largest divisor of ``dim`` not above ``dim / PQ_DIMS_PER_SUBQUANTIZER``."""
    target = max(1, dim // PQ_DIMS_PER_SUBQUANTIZER)
    return next(m for m in range(target, 0, -1) if dim % m == 0)
