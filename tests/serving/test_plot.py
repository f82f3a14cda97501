"""--plot: boxes on the heat map's cell edges, one PNG per resolved path, its path in the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from serving.cli import main
from serving.plot import cell_edges, plot_name, span_cells
from tests.serving.conftest import write_tone


def test_span_boxes_sit_on_the_cells_of_their_windows() -> None:
    starts, window = [0.0, 0.5, 1.0, 1.5, 2.0, 2.2], 1.0  # the last window aligned to the 3.2 s end
    edges = cell_edges([s + window / 2 for s in starts], 3.2)
    assert span_cells(starts, window, {"start_s": 0.5, "end_s": 2.5}) == (1, 3)
    assert span_cells(starts, window, {"start_s": 2.0, "end_s": 3.2}) == (4, 5)
    assert span_cells(starts, window, {"start_s": 0.0, "end_s": 1.0}) == (0, 0)
    assert edges[0] == 0.0 and edges[-1] == 3.2 and len(edges) == len(starts) + 1


def test_png_is_named_from_the_resolved_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert plot_name("a.flac") == plot_name("./a.flac") == plot_name(str(tmp_path / "a.flac"))
    assert plot_name("a.flac") != plot_name("sub/a.flac")


def test_identify_plot_path_is_in_the_json(fake_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_tone(tmp_path / "a.wav", 3.2)
    plots = tmp_path / "plots"
    res = CliRunner().invoke(main, ["identify", "--model", str(fake_model), "--format", "json", "--top-k", "3",
                                    "--threshold", "0", "--plot", str(plots), "a.wav", "./a.wav"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert rows[0]["plot"] == rows[1]["plot"] and Path(rows[0]["plot"]).is_file()  # one file, one PNG
    assert len(list(plots.glob("*.png"))) == 1
    assert "timeline" not in rows[0]  # --plot alone: the timeline feeds the figure, not the JSON
