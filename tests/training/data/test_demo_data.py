"""Demo catalogue: valid manifest, determinism, idempotence, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from training.data.demo_data import DemoOptions, build_demo, is_current, main
from training.data.manifest import load_manifest

SMALL = DemoOptions(records=3, train_songs=2, val_songs=1, test_songs=1, min_song_s=5.0, max_song_s=6.0,
                    min_record_s=3.0, max_record_s=4.0, min_sample_s=1.0, max_sample_s=2.0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("demo"), SMALL, workers=1)


def test_manifest_is_valid(demo: Path) -> None:
    m = load_manifest(demo)
    assert m.labels == ["r00", "r01", "r02"]
    assert [len(m.split(s)) for s in ("train", "val", "test")] == [6, 3, 3]
    assert set(m.records) == set(m.labels)
    for e in m.entries:
        info = sf.info(e.path)
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
        assert SMALL.min_song_s - 0.01 <= info.duration <= SMALL.max_song_s + 0.01
        assert e.start_s is not None and e.end_s is not None
        assert 0 <= e.start_s < e.end_s <= info.duration + 1e-3
    for name, path in m.records.items():  # the full recordings (record_path), not the sampled segments
        assert path.name == f"{name}.flac" and sf.info(path).duration > SMALL.max_sample_s
    header = (demo.parent / "manifest.csv").read_text().splitlines()[0]
    assert header == "song,sample,split,start_s,end_s,transforms,snr_db"
    assert (demo.parent / "records.csv").read_text().splitlines()[0] == "sample,record_path,sample_path"


def test_song_names_do_not_reveal_labels(demo: Path) -> None:
    m = load_manifest(demo)
    assert all(e.sample not in e.path.name for e in m.entries)


def test_deterministic_for_any_worker_count(demo: Path, tmp_path: Path) -> None:
    other = build_demo(tmp_path, SMALL, workers=2)
    assert other.read_text() == demo.read_text()
    first = sorted((demo.parent / "songs").rglob("*.flac"))[0]
    twin = other.parent / first.relative_to(demo.parent)
    np.testing.assert_array_equal(sf.read(first)[0], sf.read(twin)[0])


def test_idempotent_unless_forced_or_changed(demo: Path) -> None:
    out = demo.parent
    assert is_current(out, SMALL)
    stamp = demo.stat().st_mtime_ns
    build_demo(out, SMALL, workers=1)
    assert demo.stat().st_mtime_ns == stamp
    assert json.loads((out / "params.json").read_text())["records"] == 3
    assert not is_current(out, DemoOptions(records=4))


def test_cli(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--records", "2", "--train-songs", "1", "--val-songs", "0",
            "--test-songs", "1", "--min-song-s", "6", "--max-song-s", "6", "--workers", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    m = load_manifest(tmp_path / "manifest.csv")
    assert len(m.labels) == 2 and len(m.split("test")) == 2
    assert CliRunner().invoke(main, [*args[:2], "--min-song-s", "9", "--max-song-s", "8"]).exit_code != 0


def test_rebuild_drops_stale_songs(tmp_path: Path) -> None:
    opts = DemoOptions(records=1, train_songs=2, val_songs=0, test_songs=0, min_song_s=5.0, max_song_s=5.0,
                       min_record_s=3.0, max_record_s=3.0, min_sample_s=1.0, max_sample_s=1.5)
    build_demo(tmp_path, opts, workers=1)
    build_demo(tmp_path, DemoOptions(**{**opts.__dict__, "train_songs": 1}), workers=1)
    assert len(list((tmp_path / "songs").rglob("*.flac"))) == 1
