"""bench.accuracy.sampleid_eval: joins serving output with the manifest; top-1, span overlap, open-set rejection."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bench.accuracy.sampleid_eval import load_scored, main, report


def _write(tmp_path: Path) -> tuple[Path, Path]:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("song,sample,split,start_s,end_s\n"
                        "songs/a.flac,r1,test,10,20\nsongs/b.flac,r2,test,0,5\n"
                        "songs/c.flac,r3,open,0,5\nsongs/t.flac,r1,train,0,5\n")
    rows = [
        {"path": str(tmp_path / "songs/a.flac"), "matches": [{"sample": "r1", "score": 0.9, "start_s": 12.0,
                                                              "end_s": 14.0}], "error": None},
        {"path": str(tmp_path / "songs/b.flac"), "matches": [{"sample": "r1", "score": 0.5, "start_s": 0.0,
                                                              "end_s": 4.0}], "error": None},
        {"path": str(tmp_path / "songs/c.flac"), "matches": [{"sample": "r2", "score": 0.35, "start_s": 0.0,
                                                              "end_s": 4.0}], "error": None},
        {"path": str(tmp_path / "songs/x.flac"), "matches": [], "error": "no such file"},
    ]
    results = tmp_path / "out.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest, results


def test_scores_known_and_open_songs(tmp_path: Path) -> None:
    manifest, results = _write(tmp_path)
    scored = load_scored(manifest, results, {"test"})
    assert [s.truth for s in scored] == ["r1", "r2", None]
    assert [s.correct for s in scored] == [True, False, False]
    assert scored[0].overlaps
    text = report(scored)
    assert "top-1: 0.5000" in text and "span overlap among correct songs: 1.0000" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line[:1] == " "}
    assert rows["0.40"] == ["0.5000", "1.0000"]  # the open song (0.35) is rejected, a stays correct
    assert rows["0.00"] == ["0.5000", "0.0000"]


def test_cli_refuses_results_for_other_songs(tmp_path: Path) -> None:
    manifest, _ = _write(tmp_path)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"path": "/nowhere.flac", "matches": [], "error": None}) + "\n")
    result = CliRunner().invoke(main, [str(manifest), str(other)])
    assert result.exit_code != 0 and "no row" in result.output + str(result.exception)


def test_relative_paths_written_inside_the_data_folder_match_from_anywhere(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data" / "demo"
    data.mkdir(parents=True)
    manifest, _ = _write(data)
    rows = [{"path": "songs/a.flac", "matches": [{"sample": "r1", "score": 0.9, "start_s": 12.0, "end_s": 14.0}],
             "error": None}]  # as `cd data/demo && ast-serve identify songs/a.flac` writes it
    (data / "out.json").write_text(json.dumps(rows))  # --format json: one array
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(main, [str(Path("..") / "data" / "demo" / "manifest.csv"),
                                       str(data / "out.json")])
    assert result.exit_code == 0, result.output
    assert "known songs: 1  top-1: 1.0000" in result.output
