"""TrainWindows (shape, range, determinism, balance, record cuts) and song windowing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from serving.contract import default_hop, song_windows
from training.data.audio import read_audio
from training.data.augment import AugmentConfig
from training.data.dataset import BACKGROUND, TrainWindows
from training.data.demo_data import DemoOptions, build_demo
from training.data.manifest import Manifest, load_manifest

WINDOW = 16240  # 100 frames: a one-second window keeps the test fast
OPTS = DemoOptions(records=3, train_songs=2, val_songs=1, test_songs=0, min_song_s=5.0, max_song_s=6.0,
                   min_record_s=3.0, max_record_s=4.0, min_sample_s=1.0, max_sample_s=2.0)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return load_manifest(build_demo(tmp_path_factory.mktemp("demo"), OPTS, workers=1))


def test_items_shape_range_and_labels(manifest: Manifest) -> None:
    ds = TrainWindows(manifest, WINDOW, seed=1, epoch_size=24, augment=AugmentConfig(background_prob=0.0))
    assert len(ds) == 24
    labels = []
    for i in range(len(ds)):
        x, label = ds[i]
        assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (WINDOW,)
        assert torch.isfinite(x).all() and x.abs().max() <= 1.0 and x.abs().max() > 0
        labels.append(label)
    assert Counter(labels) == {0: 8, 1: 8, 2: 8}  # balanced
    with pytest.raises(IndexError):
        ds[24]


def test_deterministic_per_seed_epoch_index(manifest: Manifest) -> None:
    a = TrainWindows(manifest, WINDOW, seed=3, epoch_size=12)
    b = TrainWindows(manifest, WINDOW, seed=3, epoch_size=12)
    for i in (5, 0, 11):  # order of access does not matter
        xa, la = a[i]
        xb, lb = b[i]
        assert la == lb and torch.equal(xa, xb)
    first = [a[i][0] for i in range(4)]
    a.set_epoch(1)
    assert not all(torch.equal(x, a[i][0]) for i, x in enumerate(first))
    a.set_epoch(0)
    assert all(torch.equal(x, a[i][0]) for i, x in enumerate(first))
    c = TrainWindows(manifest, WINDOW, seed=4, epoch_size=12)
    assert not torch.equal(c[0][0], a[0][0])


def test_record_items_and_clean_windows(manifest: Manifest) -> None:
    only_records = TrainWindows(manifest, WINDOW, seed=0, epoch_size=6, augment=AugmentConfig(record_prob=1.0))
    assert all(only_records[i][0].abs().max() > 0 for i in range(6))
    clean = TrainWindows(manifest, WINDOW, seed=0, epoch_size=6, augment=AugmentConfig.off())
    assert clean.beds == []
    x, _ = clean[0]
    assert x.shape == (WINDOW,)


def test_short_songs_and_long_windows(manifest: Manifest) -> None:
    ds = TrainWindows(manifest, 8 * 16000, seed=0, epoch_size=3)  # longer than every song: zero-padded
    assert all(ds[i][0].shape == (8 * 16000,) for i in range(3))


def test_rejects_bad_window(manifest: Manifest) -> None:
    with pytest.raises(ValueError):
        TrainWindows(manifest, 0)


def test_song_windows_rule() -> None:
    wave = np.arange(10, dtype=np.float32)
    w = song_windows(wave, 4, 3)
    np.testing.assert_array_equal(w[:, 0], [0, 3, 6])  # 0, 3, then 6 = aligned to the end
    np.testing.assert_array_equal(w[-1], [6, 7, 8, 9])
    np.testing.assert_array_equal(song_windows(wave, 5, 5)[:, 0], [0, 5])  # exact fit: no extra window
    short = song_windows(wave[:3], 5, 2)
    assert short.shape == (1, 5) and short.dtype == np.float32
    np.testing.assert_array_equal(short[0], [0, 1, 2, 0, 0])
    assert song_windows(wave, 10, 5).shape == (1, 10)
    with pytest.raises(ValueError):
        song_windows(wave, 4, 0)


def test_eval_windows(manifest: Manifest) -> None:
    """Validation windows a val song the way ast-serve does: the contract's windows at its default hop."""
    val = manifest.split("val")
    for entry in val:
        wins = song_windows(read_audio(entry.path), WINDOW, default_hop(WINDOW))
        assert wins.ndim == 2 and wins.shape[1] == WINDOW and len(wins) >= 9  # 5-6 s, hop 0.5 s


def test_reads_record_free_manifests(tmp_path: Path, manifest: Manifest) -> None:
    bare = Manifest(entries=manifest.entries, labels=manifest.labels, records={}, root=manifest.root)
    ds = TrainWindows(bare, WINDOW, seed=0, epoch_size=3)
    assert ds.records == {} and ds[0][0].shape == (WINDOW,)


def test_background_items_hold_no_sample(manifest: Manifest) -> None:
    ds = TrainWindows(manifest, WINDOW, seed=2, epoch_size=40, augment=AugmentConfig(background_prob=1.0))
    items = [ds[i] for i in range(len(ds))]
    assert {label for _, label in items} == {BACKGROUND}
    assert all(torch.isfinite(x).all() and x.abs().max() > 0 for x, _ in items)
    some = TrainWindows(manifest, WINDOW, seed=2, epoch_size=200)  # default share
    share = sum(some[i][1] == BACKGROUND for i in range(len(some))) / len(some)
    assert 0.03 < share < 0.2


def test_background_windows_lie_outside_the_sample_span(manifest: Manifest) -> None:
    ds = TrainWindows(manifest, WINDOW, seed=0, epoch_size=4)
    assert ds._outside, "demo songs have audio outside their sample's span"
    for song, first, last in ds._outside:
        span = ds.songs[song]
        assert last + WINDOW <= span.start or first >= span.end


def test_background_avoids_every_sample_of_a_multi_sample_song(tmp_path: Path) -> None:
    import soundfile as sf

    sf.write(tmp_path / "song.wav", np.random.default_rng(0).standard_normal(16000 * 20).astype(np.float32) * 0.1,
             16000)
    sf.write(tmp_path / "other.wav", np.zeros(16000 * 5, np.float32) + 0.01, 16000)
    (tmp_path / "manifest.csv").write_text("song,sample,split,start_s,end_s\n"
                                           "song.wav,a,train,2,6\nsong.wav,b,train,12,14\n"
                                           "other.wav,b,train,0,5\n")
    ds = TrainWindows(load_manifest(tmp_path / "manifest.csv"), 16000 * 3, seed=0, epoch_size=4)
    windows = [(first, last + 16000 * 3) for _, first, last in ds._outside]  # sample ranges covered
    for lo, hi in windows:
        assert hi <= 2 * 16000 or (6 * 16000 <= lo and hi <= 12 * 16000) or lo >= 14 * 16000, (lo, hi)
    assert windows == [(6 * 16000, 12 * 16000), (14 * 16000, 20 * 16000)]
