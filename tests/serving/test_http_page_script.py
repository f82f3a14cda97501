"""The page's script, run under node with a DOM stub: table, record columns, timeline, seeking, the API key.

Skipped when ``node`` is absent. (The headless-Chromium test, ``slow``, checks the real browser.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

NODE = shutil.which("node")
HARNESS = Path(__file__).with_name("page_harness.js")
ANSWER = {
    "path": "song.flac", "duration_s": 30.0, "error": None,
    "matches": [
        {"sample": "r001", "score": 0.91, "start_s": 4.0, "end_s": 10.0,
         "spans": [{"start_s": 4.0, "end_s": 10.0}, {"start_s": 20.0, "end_s": 26.0}],
         "record_start_s": 61.5, "record_end_s": 67.5, "speed": 1.02},
        {"sample": "r003", "score": 0.40, "start_s": 12.0, "end_s": 14.0},
    ],
    "timeline": {"window_s": 4.0, "start_s": [0.0, 2.0, 4.0, 6.0], "samples": ["r001", "r003"],
                 "scores": [[0.1, 0.5, 0.9, 0.8], [0.2, 0.4, 0.1, 0.0]]},
}


@pytest.mark.skipif(NODE is None, reason="needs node to run the page's script")
def test_page_script_shows_matches_records_timeline_and_seeks() -> None:
    page = resources.files("serving.http").joinpath("page.html")
    with resources.as_file(page) as path:
        proc = subprocess.run([NODE, str(HARNESS), str(path), json.dumps(ANSWER)], capture_output=True, text=True,
                              timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["error"] == "" and "2 match(es)" in out["status"]
    assert out["requested"]["url"].startswith("v1/identify?") and "timeline=true" in out["requested"]["url"]
    assert out["requested"]["headers"] == {"Authorization": "Bearer k"}
    first, second = out["rows"]
    assert first[:3] == ["1", "r001", "0.910"] and first[3] == ["0:04.0–0:10.0", "0:20.0–0:26.0"]
    assert first[4:] == ["1:01.5", "1:07.5", "1.020"]  # record start, end, speed with a catalogue
    assert second[3] == ["0:12.0–0:14.0"] and second[4:] == ["-", "-", "-"]
    assert out["head"] == 7 and out["seek"] == 20.0  # clicking the second span seeks to it
    assert out["canvasHidden"] is False and out["strokes"] >= 2 and out["fills"] >= 3  # curves, spans
