"""ast-serve index build/add/info: the catalogue folder, its refusals and its crash safety."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from serving import catalogue_build
from serving.catalogue import Catalogue
from serving.catalogue_format import CALIBRATION_FILE, CATALOGUE_FILE, write_lock
from serving.cli import main
from serving.verify_align import BANDS, FRAME_HOP, N_FFT, log_spectrogram
from tests.serving.fake_model import build_fingerprint_model, metadata
from tests.serving.retrieval_helpers import records_csv, song_from, synth_record, write

HOP = "0.1"  # the fake's 1 s window wants a fine hop (a real model's 4 s window takes the default 0.5 s)
NAMES, SEEDS = ["alpha", "beta", "gamma"], [1, 2, 3]


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _one_line_error(res, code: int = 2) -> str:
    assert res.exit_code == code, res.stderr
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    return errors[0]


@pytest.fixture(scope="module")
def fp_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fingerprint_model(tmp_path_factory.mktemp("fp") / "fp.onnx")


@pytest.fixture(scope="module")
def built(fp_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalogue of three synthetic records, built once for the module."""
    base = tmp_path_factory.mktemp("cat")
    csv = records_csv(base / "records", NAMES, SEEDS)
    res = _run("index", "build", "--model", fp_model, "--records", csv, "--out", base / "cat", "--hop", HOP)
    assert res.exit_code == 0, res.stderr
    return base / "cat"


def _copy(cat: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(cat, tmp_path / "copy"))


def test_build_writes_the_folder(built: Path, fp_model: Path) -> None:
    meta = json.loads((built / CATALOGUE_FILE).read_text())
    assert meta["format_version"] == 3 and meta["weights_sha256"] == "0" * 64
    assert meta["hop_samples"] == 1600 and meta["window_samples"] == 16000 and meta["sample_rate"] == 16000
    assert meta["scales"] == list(catalogue_build.DEFAULT_SCALES)
    assert [r["name"] for r in meta["records"]] == NAMES
    assert all(len(r["sha256"]) == 64 and r["duration_s"] == 10.0 for r in meta["records"])
    assert meta["records"][1]["id_start"] == meta["records"][0]["id_end"]
    table = np.load(built / meta["ids_file"])
    assert table.shape == (meta["records"][-1]["id_end"], 3)
    assert set(np.unique(table[:, 0])) == {0, 1, 2} and set(np.unique(table[:, 1])) == set(range(5))
    assert table[:, 2].max() <= 10 * 16000  # starts are in the original record's samples
    spectra = np.load(built / meta["spectra_file"])
    frames = [r["spec_end"] - r["spec_start"] for r in meta["records"]]
    assert spectra.dtype == np.float16 and spectra.shape == (sum(frames), BANDS)
    assert frames == [1 + (10 * 16000 - N_FFT) // FRAME_HOP] * 3
    assert np.allclose(spectra[:frames[0]], log_spectrogram(synth_record(SEEDS[0]), 16000), atol=0.02)
    cal = json.loads((built / CALIBRATION_FILE).read_text())
    assert cal["far"] == 0.01 and cal["threshold"] == 0.99 and cal["generation"] == meta["generation"]
    assert cal["queries"]["excerpt"] == 15 and "song" not in cal["queries"] and len(cal["null_scores"]) >= 15
    info = _run("index", "info", built, "--format", "json")
    data = json.loads(info.stdout)
    assert data["records"] == 3 and data["windows"] == table.shape[0] and data["index"] == "flat"
    with np.load(built / meta["landmarks_file"]) as landmarks:
        assert data["landmarks"] == landmarks["keys"].shape[0] > 0
        assert set(np.unique(landmarks["record"])) == {0, 1, 2}
    assert data["bytes"] > 0 and data["calibration"]["null_queries"] == len(cal["null_scores"])
    table_out = _run("index", "info", built).stdout
    assert "weights_sha256" in table_out and "FAR 1.00%" in table_out


def test_another_model_and_unknown_format_are_refused(built: Path, tmp_path: Path) -> None:
    other = build_fingerprint_model(tmp_path / "other.onnx", meta=metadata(weights_sha256="1" * 64))
    song = write(tmp_path / "song.wav", synth_record(1)[:32000])
    line = _one_line_error(_run("identify", "--model", other, "--index", built, song))
    assert "built with another model" in line
    copy = _copy(built, tmp_path)
    meta = json.loads((copy / CATALOGUE_FILE).read_text())
    meta["format_version"] = 99
    (copy / CATALOGUE_FILE).write_text(json.dumps(meta))
    assert "unknown catalogue format_version 99" in _one_line_error(_run("index", "info", copy))
    meta["format_version"] = 1
    (copy / CATALOGUE_FILE).write_text(json.dumps(meta))
    assert "format 1 predates the stored record spectrograms; rebuild" in _one_line_error(_run("index", "info", copy))
    assert "not a catalogue" in _one_line_error(_run("index", "info", tmp_path))


@pytest.mark.parametrize("target", ["index", "ids", "spectra", "landmarks", "catalogue", "calibration"])
def test_corrupt_or_truncated_files_are_refused(built: Path, fp_model: Path, tmp_path: Path, target: str) -> None:
    copy = _copy(built, tmp_path)
    meta = json.loads((copy / CATALOGUE_FILE).read_text())
    path = copy / {"index": meta["index_file"], "ids": meta["ids_file"], "spectra": meta["spectra_file"],
                   "landmarks": meta["landmarks_file"], "catalogue": CATALOGUE_FILE,
                   "calibration": CALIBRATION_FILE}[target]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    song = write(tmp_path / "song.wav", synth_record(1)[:32000])
    line = _one_line_error(_run("identify", "--model", fp_model, "--index", copy, song))
    assert "corrupt" in line


def test_a_format_2_catalogue_answers_without_landmarks_and_stays_so(built: Path, fp_model: Path,
                                                                     tmp_path: Path) -> None:
    copy = _copy(built, tmp_path)
    meta = json.loads((copy / CATALOGUE_FILE).read_text())
    (copy / meta.pop("landmarks_file")).unlink()
    meta.pop("landmarks_sha256")
    meta["format_version"] = 2  # written before the landmarks existed
    (copy / CATALOGUE_FILE).write_text(json.dumps(meta))
    assert Catalogue.open(copy).landmarks is None
    song = write(tmp_path / "song.wav", song_from(synth_record(2), 2.0, 7.0, 1.0, [1.0], 8.0))
    args = ("identify", "--model", fp_model, "--index", copy, "--format", "json", song)
    out = _run(*args, "--threshold", "0")  # this copy's calibration counted landmark votes: forced answers only
    assert out.exit_code == 0 and json.loads(out.stdout)[0]["matches"][0]["sample"] == "beta"
    assert _run("index", "add", copy, write(tmp_path / "delta.wav", synth_record(4))).exit_code == 0
    again = Catalogue.open(copy)
    assert again.meta.format_version == 3 and again.landmarks is None and len(again.meta.records) == 4
    out = _run(*args)  # recalibrated by the add, without landmarks
    assert out.exit_code == 0 and [m["sample"] for m in json.loads(out.stdout)[0]["matches"]] == ["beta"]


def test_failure_after_the_new_index_is_written_keeps_the_old_catalogue(
        built: Path, fp_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = _copy(built, tmp_path)
    before = (copy / CATALOGUE_FILE).read_text()
    extra = write(tmp_path / "delta.wav", synth_record(4))

    def killed(*_args, **_kwargs):
        raise RuntimeError("killed")  # as if the process died between the new files and catalogue.json

    monkeypatch.setattr(catalogue_build, "calibrate", killed)  # right after the new index and id table
    with pytest.raises(RuntimeError, match="killed"):
        _run("index", "add", copy, "--model", fp_model, extra)
    monkeypatch.undo()
    assert (copy / CATALOGUE_FILE).read_text() == before
    assert len(list(copy.glob("vectors-*.faiss"))) == 2  # the orphan of the interrupted write
    cat = Catalogue.open(copy)  # the old catalogue is intact and usable (its calibration warns)
    assert [r.name for r in cat.meta.records] == NAMES
    info = _run("index", "info", copy, "--format", "json")
    assert info.exit_code == 0 and json.loads(info.stdout)["records"] == 3
    write(tmp_path / "alpha.wav", synth_record(1))
    again = _run("index", "add", copy, "--model", fp_model, tmp_path / "alpha.wav")  # nothing new to add
    assert again.exit_code == 0 and "already indexed" in again.stderr
    assert len(list(copy.glob("vectors-*.faiss"))) == 1  # the next writer removed the orphan


def test_add_finds_the_new_record_and_undecodable_records_are_skipped(
        built: Path, fp_model: Path, tmp_path: Path) -> None:
    copy = _copy(built, tmp_path)
    delta = synth_record(4)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really audio" * 10)
    res = _run("index", "add", copy, write(tmp_path / "delta.wav", delta), bad)  # model: the catalogue's
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert sum(str(bad) in line for line in res.stderr.splitlines()) == 1
    assert len(list(copy.glob("vectors-*.faiss"))) == 1  # the replaced index is gone
    cat = Catalogue.open(copy)
    assert [r.name for r in cat.meta.records] == [*NAMES, "delta"]
    again = _run("index", "add", copy, tmp_path / "delta.wav")
    assert again.exit_code == 0 and "already indexed" in again.stderr
    song = write(tmp_path / "song.wav", song_from(delta, 2.0, 7.0, 1.0, [1.0], 8.0))
    out = _run("identify", "--model", fp_model, "--index", copy, "--format", "json", song)
    assert out.exit_code == 0, out.stderr
    assert [m["sample"] for m in json.loads(out.stdout)[0]["matches"]] == ["delta"]
    assert len(list(copy.glob("spectra-*.npy"))) == 1 and Catalogue.open(copy).spectra.get(3).shape[1] == BANDS


def test_corrupt_spectra_of_one_record_skip_it_with_one_warning(built: Path, fp_model: Path, tmp_path: Path) -> None:
    copy = _copy(built, tmp_path)
    meta = json.loads((copy / CATALOGUE_FILE).read_text())
    spectra = np.load(copy / meta["spectra_file"])
    first = meta["records"][0]
    spectra[first["spec_start"] + 10:first["spec_start"] + 20] += 1  # alpha's frames, bit rot
    np.save(copy / meta["spectra_file"], spectra)
    songs = [write(tmp_path / f"{n}.wav", song_from(synth_record(seed), 2.0, 7.0, 1.0, [1.0], 8.0))
             for n, seed in (("a", 1), ("b", 2))]
    res = _run("identify", "--model", fp_model, "--index", copy, "--format", "json", *songs)
    assert res.exit_code == 0 and "Traceback" not in res.stderr
    warnings = [line for line in res.stderr.splitlines() if "corrupt" in line]
    assert len(warnings) == 1 and "'alpha' is not verified" in warnings[0]
    answers = [[m["sample"] for m in song["matches"]] for song in json.loads(res.stdout)]
    assert "alpha" not in answers[0] and answers[1] == ["beta"]


def test_identify_needs_no_record_audio(built: Path, fp_model: Path, tmp_path: Path) -> None:
    """Verification reads the catalogue's spectra: moving the record files away changes nothing."""
    copy = _copy(built, tmp_path)
    song = write(tmp_path / "song.wav", song_from(synth_record(2), 2.0, 7.0, 1.0, [1.0], 8.0))
    args = ("identify", "--model", fp_model, "--index", copy, "--format", "json", song)
    before = _run(*args)
    records = Path(Catalogue.open(copy).meta.records[0].path).parent
    shutil.move(records, tmp_path / "moved")
    try:
        after = _run(*args)
    finally:
        shutil.move(tmp_path / "moved", records)
    assert after.exit_code == 0 and after.stdout == before.stdout and after.stderr == before.stderr
    assert [m["sample"] for m in json.loads(after.stdout)[0]["matches"]] == ["beta"]


def test_build_goes_on_past_an_undecodable_record(fp_model: Path, tmp_path: Path) -> None:
    good = write(tmp_path / "good.wav", synth_record(5, seconds=4.0))
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"\x00" * 100)
    res = _run("index", "build", "--model", fp_model, "--out", tmp_path / "cat", "--hop", "0.25",
               "--scales", "1.0", good, bad, tmp_path / "missing.wav")
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert f"{bad}: " in res.stderr and f"{tmp_path / 'missing.wav'}: no such file" in res.stderr
    assert [r.name for r in Catalogue.open(tmp_path / "cat").meta.records] == ["good"]
    nothing = _run("index", "build", "--model", fp_model, "--out", tmp_path / "none", bad)
    assert "no record could be indexed" in _one_line_error(nothing)


def test_a_second_writer_is_refused(built: Path, fp_model: Path, tmp_path: Path) -> None:
    copy = _copy(built, tmp_path)
    extra = write(tmp_path / "delta.wav", synth_record(4, seconds=3.0))
    with write_lock(copy):  # another writer holds the lock
        line = _one_line_error(_run("index", "add", copy, "--model", fp_model, extra))
        assert "being written by another process" in line
        build = _run("index", "build", "--model", fp_model, "--out", copy, extra)
        assert "being written by another process" in _one_line_error(build)
    assert [r.name for r in Catalogue.open(copy).meta.records] == NAMES


KILL_ATTEMPTS = 3  # a writer that outruns the poll (finishes before the kill lands) is retried, never skipped


def _kill_mid_add(copy: Path, fp_model: Path, extra: Path) -> bool:
    """Start ``index add``, SIGKILL it once its new index file exists; True when it died before catalogue.json."""
    before = (copy / CATALOGUE_FILE).read_text()
    old = set(copy.glob("vectors-*.faiss"))
    writer = subprocess.Popen([sys.executable, "-m", "serving.cli", "index", "add", str(copy), "--model",
                               str(fp_model), str(extra)], cwd=Path(__file__).resolve().parents[2],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not set(copy.glob("vectors-*.faiss")) - old and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    return (copy / CATALOGUE_FILE).read_text() == before


def test_sigkill_mid_write_leaves_the_old_catalogue(built: Path, fp_model: Path, tmp_path: Path) -> None:
    """A real kill: the writer dies once its new index file exists (it is calibrating), before catalogue.json."""
    extra = write(tmp_path / "delta.wav", synth_record(4))
    for attempt in range(KILL_ATTEMPTS):
        copy = _copy(built, tmp_path / f"attempt{attempt}")
        if _kill_mid_add(copy, fp_model, extra):
            break
    else:
        pytest.fail(f"index add finished before SIGKILL in all {KILL_ATTEMPTS} attempts")
    assert [r.name for r in Catalogue.open(copy).meta.records] == NAMES
