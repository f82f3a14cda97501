#!/usr/bin/env bash
# The filler bar's distractor records: whole tracks of Debian game-music packages that no benchmark song samples.
#
#   usage: bench/accuracy/fetch_filler.sh DIR > DIR/files.txt
#   then:  .venv/bin/python -m bench.accuracy.filler --sources DIR/files.txt --out FILLER \
#              --exclude-copies-of BENCH_SOURCES_DIR
#
# ../shared/bench/fetch_sources.sh filler has 7 packages and 56 tracks, too few for the bar's >= 300 records.
# With 18 more packages the list gives 306 tracks of >= 30 s (18.1 h, median 2.6 min; measured 2026-12-03 on
# bookworm). None of these packages is in dev or dev-plus (supertux, hedgewars, hyperrogue, extremetuxracer), but
# supertuxkart-data ships one of supertux's tracks byte for byte: --exclude-copies-of drops it. Needs apt
# (root, or a readable cache).
# Prints the audio files (.ogg .opus .mp3 .flac .wav) of >= MIN_S seconds (default 30: shorter files are sound
# effects), one per line.
set -euo pipefail

dest=${1:?usage: $0 DIR}
min_s=${MIN_S:-30}
here=$(cd "$(dirname "$0")/../.." && pwd)
pkgs=(nexuiz-music planetblupi-music-ogg singularity-music warzone2100-music xblast-tnt-musics fb-music-high
      ufoai-music
      wesnoth-1.16-music freedroidrpg-data frozen-bubble-data lincity-ng-data flare-game openclonk-data lugaru-data
      alienblaster-data widelands-data megaglest-data supertuxkart-data redeclipse-data cube2-data xmoto-data
      marsshooter-data endless-sky-data powermanga-data caveexpress-data)

mkdir -p "$dest/.debs"
dest=$(cd "$dest" && pwd)
missing=()
for p in "${pkgs[@]}"; do
  compgen -G "$dest/.debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-cache show "${missing[0]}" >/dev/null 2>&1 || apt-get update -qq >&2
  (cd "$dest/.debs" && apt-get download "${missing[@]}" >&2)
fi
for p in "${pkgs[@]}"; do
  if [[ ! -d "$dest/$p" ]]; then
    echo "extracting $p" >&2
    dpkg -x "$(ls "$dest/.debs/${p}"_*.deb | sort | tail -n 1)" "$dest/$p"
  fi
done

"$here/.venv/bin/python" - "$dest" "$min_s" "${pkgs[@]}" <<'PY'
import sys
from pathlib import Path

import soundfile as sf

AUDIO = {".ogg", ".opus", ".mp3", ".flac", ".wav"}
dest, min_s, pkgs = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
for pkg in pkgs:
    for path in sorted(p for p in (dest / pkg).rglob("*") if p.suffix.lower() in AUDIO and p.is_file()):
        try:
            info = sf.info(str(path))
        except sf.LibsndfileError:
            continue  # named like audio, but not decodable
        if info.frames >= min_s * info.samplerate:
            print(path)
PY
