"""Manifest loading: happy path, every error kind, split warning, val carving, records.csv."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from training.data.manifest import MAX_PROBLEMS_SHOWN, ManifestError, carve_val, load_manifest
from training.data.manifest_paths import main as paths_main


def _wav(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(4 * 160, dtype=np.float32), 160)  # 4 s at a tiny rate: small files
    return path.name


def _write(root: Path, header: str, rows: list[str], name: str = "manifest.csv") -> Path:
    path = root / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture
def songs(tmp_path: Path) -> Path:
    for i in range(8):
        _wav(tmp_path / "audio" / f"s{i}.wav")
    return tmp_path


def test_happy_path(songs: Path) -> None:
    path = _write(songs, "song,sample,split,start_s,end_s,extra", [
        "audio/s0.wav,b,train,1.0,2.5,x", "audio/s1.wav,a,train,,,y", "audio/s2.wav,a,val,0,1,z",
        "audio/s3.wav,b,test,,,", "audio/s4.wav,a,train,,,",
    ])
    m = load_manifest(path)
    assert m.labels == ["a", "b"]
    assert m.root == songs.resolve()
    assert [e.path.name for e in m.split("train")] == ["s0.wav", "s1.wav", "s4.wav"]
    assert [e.path.name for e in m.split("val")] == ["s2.wav"]
    assert [e.path.name for e in m.split("test")] == ["s3.wav"]
    first = m.split("train")[0]
    assert first.path.is_absolute() and (first.start_s, first.end_s) == (1.0, 2.5)
    assert m.split("train")[1].start_s is None
    assert m.records == {}
    assert m.label_index() == {"a": 0, "b": 1}


def test_missing_columns(songs: Path) -> None:
    path = _write(songs, "file,label", ["audio/s0.wav,a"])
    with pytest.raises(ManifestError, match="missing column"):
        load_manifest(path)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "nope.csv")


def test_missing_files_are_listed(songs: Path) -> None:
    path = _write(songs, "song,sample", ["audio/s0.wav,a", "audio/gone.wav,a", "audio/gone2.wav,b"])
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert "gone.wav" in str(info.value) and "gone2.wav" in str(info.value)
    assert len(info.value.problems) == 2
    assert isinstance(info.value, ValueError)


def test_unknown_val_test_labels(songs: Path) -> None:
    path = _write(songs, "song,sample,split", ["audio/s0.wav,a,train", "audio/s1.wav,a,val",
                                               "audio/s2.wav,z,test", "audio/s3.wav,y,val"])
    with pytest.raises(ManifestError, match="'z'.*not in train"):
        load_manifest(path)


def test_empty_train(songs: Path) -> None:
    path = _write(songs, "song,sample,split", ["audio/s0.wav,a,test"])
    with pytest.raises(ManifestError, match="train split is empty"):
        load_manifest(path)


@pytest.mark.parametrize(("start", "end", "needle"), [
    ("2", "1", "greater than start_s"), ("x", "", "not a number"), ("-1", "", ">= 0"), ("1", "1", "greater"),
])
def test_bad_times(songs: Path, start: str, end: str, needle: str) -> None:
    path = _write(songs, "song,sample,start_s,end_s", [f"audio/s0.wav,a,{start},{end}"])
    with pytest.raises(ManifestError, match=needle):
        load_manifest(path)


def test_problem_list_is_truncated(songs: Path) -> None:
    rows = [f"audio/missing{i}.wav,a" for i in range(MAX_PROBLEMS_SHOWN + 5)]
    with pytest.raises(ManifestError, match="and 5 more") as info:
        load_manifest(_write(songs, "song,sample", rows))
    assert str(info.value).count("missing") == MAX_PROBLEMS_SHOWN


def test_other_splits_skipped_with_one_warning(songs: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(songs, "song,sample,split", ["audio/s0.wav,a,train", "audio/s1.wav,a,open",
                                               "audio/s2.wav,b,open", "audio/s3.wav,a,val", "audio/s4.wav,a,"])
    with caplog.at_level(logging.WARNING, logger="training.data.manifest"):
        m = load_manifest(path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "3 row(s)" in warnings[0].getMessage()
    assert len(m.entries) == 2


def test_no_split_column_carves_val(songs: Path) -> None:
    rows = [f"audio/s{i}.wav,{'a' if i < 7 else 'b'}" for i in range(8)]
    m = load_manifest(_write(songs, "song,sample", rows))
    val, train = m.split("val"), m.split("train")
    assert len(val) == 1 and val[0].sample == "a"  # 'b' has one song: it stays in train
    assert {e.sample for e in train} == {"a", "b"}
    again = load_manifest(_write(songs, "song,sample", list(reversed(rows))))
    assert {e.path for e in again.split("val")} == {e.path for e in val}  # row order does not matter


def test_carve_keeps_one_train_song_per_label(songs: Path) -> None:
    m = load_manifest(_write(songs, "song,sample,split", [f"audio/s{i}.wav,a,train" for i in range(2)]))
    carved = carve_val(m.entries + [], fraction=0.9)
    assert sum(e.split == "train" for e in carved) >= 1


def test_records_prefer_record_path(songs: Path) -> None:
    _wav(songs / "rec" / "a.wav")
    (songs / "records.csv").write_text("sample,record_path,sample_path,source_file\na,rec/a.wav,rec/none.wav,q\n")
    m = load_manifest(_write(songs, "song,sample", ["audio/s0.wav,a"]))
    assert m.records == {"a": (songs / "rec" / "a.wav").resolve()}  # sample_path is never read (nor checked)


def test_records_record_path_only(songs: Path) -> None:
    _wav(songs / "rec" / "a.wav")
    (songs / "records.csv").write_text("sample,record_path\na,rec/a.wav\n")
    m = load_manifest(_write(songs, "song,sample", ["audio/s0.wav,a"]))
    assert m.records == {"a": (songs / "rec" / "a.wav").resolve()}


def test_records_sample_path_only_is_the_recording(songs: Path) -> None:
    _wav(songs / "rec" / "a_sample.wav")
    (songs / "records.csv").write_text("sample,sample_path\na,rec/a_sample.wav\n")
    m = load_manifest(_write(songs, "song,sample", ["audio/s0.wav,a"]))
    assert m.records == {"a": (songs / "rec" / "a_sample.wav").resolve()}


def test_records_missing_record_file(songs: Path) -> None:
    (songs / "records.csv").write_text("sample,record_path\na,rec/none.wav\n")
    with pytest.raises(ManifestError, match=r"record_path\): file not found") as err:
        load_manifest(_write(songs, "song,sample", ["audio/s0.wav,a"]))
    assert "\n" not in err.value.summary


def test_records_missing_file(songs: Path) -> None:
    (songs / "records.csv").write_text("sample,sample_path\na,rec/none.wav\n")
    with pytest.raises(ManifestError, match=r"sample_path\): file not found"):
        load_manifest(_write(songs, "song,sample", ["audio/s0.wav,a"]))


def test_records_missing_column(songs: Path) -> None:
    (songs / "records.csv").write_text("sample,path\na,x.wav\n")
    with pytest.raises(ManifestError, match="records.csv: missing column"):
        load_manifest(_write(songs, "song,sample", ["audio/s0.wav,a"]))


def test_manifest_paths_cli(songs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(songs, "song,sample,split", ["audio/s0.wav,a,train", "audio/s1.wav,a,test",
                                               "audio/s2.wav,a,test"])
    monkeypatch.chdir(songs)
    result = CliRunner().invoke(paths_main, [str(path), "--split", "test"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["audio/s1.wav", "audio/s2.wav"]
    bad = CliRunner().invoke(paths_main, [str(_write(songs, "x,y", ["1,2"], "bad.csv"))])
    assert bad.exit_code != 0 and "missing column" in bad.output


def test_song_in_two_splits(songs: Path) -> None:
    path = _write(songs, "song,sample,split", ["audio/s0.wav,a,train", "audio/s1.wav,a,val",
                                               "audio/s0.wav,a,test"])
    with pytest.raises(ManifestError, match="several splits"):
        load_manifest(path)


def test_unreadable_audio_and_start_past_end(songs: Path) -> None:
    (songs / "audio" / "junk.wav").write_bytes(b"junk" * 50)
    path = _write(songs, "song,sample,start_s", ["audio/junk.wav,a,", "audio/s0.wav,a,5.0", "audio/s1.wav,a,"])
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    text = str(info.value)
    assert "unreadable audio" in text and "junk.wav" in text and "past the end" in text


def test_carve_never_takes_another_labels_last_train_song(songs: Path) -> None:
    # s0..s3 each also use a sample that has no other train song, so only s4 and s5 may move to val, while
    # half of a's 6 songs (3) are asked for: whatever the shuffle, a whole-song carve hit some only{i}.
    rows = [f"audio/s{i}.wav,a" for i in range(6)] + [f"audio/s{i}.wav,only{i}" for i in range(4)]
    m = load_manifest(_write(songs, "song,sample", rows), carve_fraction=0.5)
    assert m.labels == ["a", "only0", "only1", "only2", "only3"]
    assert {e.sample for e in m.split("train")} == set(m.labels)
    assert {e.path.name for e in m.split("val")} == {"s4.wav", "s5.wav"}
    again = load_manifest(_write(songs, "song,sample", list(reversed(rows))), carve_fraction=0.5)
    assert [e.path.name for e in again.split("val")] == ["s5.wav", "s4.wav"]  # same songs, row order kept


def test_carve_moves_nothing_when_every_song_is_some_labels_last(songs: Path) -> None:
    rows = [f"audio/s{i}.wav,a" for i in range(3)] + [f"audio/s{i}.wav,only{i}" for i in range(3)]
    m = load_manifest(_write(songs, "song,sample", rows))
    assert not m.split("val") and {e.sample for e in m.split("train")} == set(m.labels)
    carved = carve_val(m.entries, fraction=0.9)
    assert all(e.split == "train" for e in carved)


def test_song_using_several_samples_is_not_a_duplicate(songs: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = ["audio/s0.wav,a,train", "audio/s0.wav,b,train", "audio/s1.wav,a,train", "audio/s2.wav,b,train",
            "audio/s3.wav,a,val", "audio/s3.wav,b,val"]
    with caplog.at_level(logging.INFO, logger="training.data.manifest"):
        m = load_manifest(_write(songs, "song,sample,split", rows))
    assert len(m.entries) == 6
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    summary = [r.getMessage() for r in caplog.records if "labels" in r.getMessage()]
    assert len(summary) == 1 and "3 train, 1 val, 0 test songs (4 train, 2 val, 0 test rows)" in summary[0]


def test_same_song_and_sample_twice_is_warned(songs: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = ["audio/s0.wav,a,train", "audio/s0.wav,a,train", "audio/s0.wav,b,train", "audio/s1.wav,a,val"]
    with caplog.at_level(logging.INFO, logger="training.data.manifest"):
        load_manifest(_write(songs, "song,sample,split", rows))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 song/sample pair(s)" in warnings[0] and "same split" in warnings[0]
    assert any("1 train, 1 val, 0 test songs" in r.getMessage() for r in caplog.records)


def test_typo_column_is_warned_with_the_likely_name(songs: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(songs, "song,sample,split,start,end_s,notes", ["audio/s0.wav,a,train,1,2,x", "audio/s1.wav,a,val,,,"])
    with caplog.at_level(logging.WARNING, logger="training.data.manifest"):
        m = load_manifest(path)
    warned = [r.getMessage() for r in caplog.records]
    assert warned == ["manifest.csv: unknown column 'start' is ignored; did you mean 'start_s'?"]
    assert m.split("train")[0].start_s is None  # ignored, as the warning says


def test_missing_column_error_names_the_file_once_and_the_likely_column(songs: Path) -> None:
    path = _write(songs, "Song,sample", ["audio/s0.wav,a"], name="typo.csv")
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert str(info.value).count("typo.csv") == 1
    assert "did you mean 'Song' for 'song'?" in info.value.summary


def test_splits_in_another_case_are_accepted(songs: Path) -> None:
    path = _write(songs, "song,sample,split", ["audio/s0.wav,a,Train", "audio/s1.wav,a, VAL ", "audio/s2.wav,a,TEST"])
    m = load_manifest(path)
    assert [len(m.split(s)) for s in ("train", "val", "test")] == [1, 1, 1]
