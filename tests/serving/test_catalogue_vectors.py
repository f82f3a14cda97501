"""serving.vectors: the FAISS store (flat, IVF-PQ past the threshold), its files, and refusal of broken ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving import vectors
from serving.catalogue_format import CatalogueError
from serving.vectors import FaissStore

DIM = 32


def _unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_search_exclude_and_round_trip(tmp_path: Path) -> None:
    store = FaissStore(DIM)
    vecs = _unit(200)
    store.add(np.arange(100, 300), vecs)
    assert store.ntotal == 200 and store.kind == "flat" and store.nbytes == 200 * (DIM * 4 + 8)
    sims, ids = store.search(vecs[:5], 3)
    assert ids[:, 0].tolist() == [100, 101, 102, 103, 104] and np.allclose(sims[:, 0], 1.0, atol=1e-5)
    _, ids = store.search(vecs[:5], 3, exclude=(100, 150))
    assert not ((ids >= 100) & (ids < 150)).any()
    store.save(tmp_path, "v.faiss")
    again = FaissStore.load(tmp_path, "v.faiss", DIM)
    assert again.ntotal == 200 and again.search(vecs[7:8], 1)[1][0, 0] == 107
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("n, m, k, exclude", [(3000, 60, 32, None), (3000, 7, 32, (100, 2500)), (5, 3, 8, None),
                                              (40, 2, 16, (0, 35)), (2500, 600, 4, None)])
def test_flat_search_finds_what_faiss_finds(monkeypatch: pytest.MonkeyPatch, n: int, m: int, k: int,
                                            exclude: tuple[int, int] | None) -> None:
    """The blocked BLAS search (small blocks forced) returns FAISS's neighbours, best first, -1 past the end."""
    monkeypatch.setattr(vectors, "FLAT_BLOCK_FLOATS", 4096)
    store = FaissStore(DIM)
    store.add(np.arange(n)[::-1] * 3, _unit(n))  # ids unrelated to rows
    queries = _unit(m, seed=1)
    sims, ids = store.search(queries, k, exclude)
    sel = None if exclude is None else vectors.faiss.IDSelectorNot(vectors.faiss.IDSelectorRange(*exclude))
    want_sims, want_ids = store.index.search(queries, k, params=None if sel is None else
                                             vectors.faiss.SearchParameters(sel=sel))
    assert ids.shape == (m, k) and sims.dtype == np.float32
    assert np.allclose(sims, want_sims, atol=1e-5)
    assert (ids == want_ids).mean() > 0.99  # only ties may swap
    assert all(set(a) == set(b) for a, b in zip(ids.tolist(), want_ids.tolist(), strict=True))
    assert (np.diff(sims, axis=1) <= 0).all()


def test_ivfpq_past_the_threshold(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(vectors, "FLAT_MAX_VECTORS", 500)
    store = FaissStore(DIM)
    vecs = _unit(1200, seed=1)
    store.add(np.arange(400), vecs[:400])
    assert store.kind == "flat"
    store.add(np.arange(400, 1200), vecs[400:])  # grows past the threshold: retrained as IVF-PQ
    assert store.kind == "ivfpq" and store.ntotal == 1200 and store.nbytes < 1200 * DIM * 4
    _, ids = store.search(vecs[:200], 5)
    assert (ids == np.arange(200)[:, None]).any(axis=1).mean() > 0.8  # approximate, but finds itself
    store.save(tmp_path, "ivf.faiss")
    assert FaissStore.load(tmp_path, "ivf.faiss", DIM).kind == "ivfpq"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_broken_index_file_is_one_line(tmp_path: Path, damage: str) -> None:
    store = FaissStore(DIM)
    store.add(np.arange(50), _unit(50))
    path = store.save(tmp_path, "v.faiss")
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not an index" * 40, "empty": b""}[damage])
    with pytest.raises(CatalogueError) as err:
        FaissStore.load(tmp_path, "v.faiss", DIM)
    assert "\n" not in str(err.value) and "v.faiss" in str(err.value)
    with pytest.raises(CatalogueError, match="missing"):
        FaissStore.load(tmp_path, "absent.faiss", DIM)
