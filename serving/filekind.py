"""What kind of file a user gave, found from its bytes (torch-free), and which command takes it.

Every CLI checks a path with :func:`kind_mismatch` before it loads it, so that the wrong kind of file (an ONNX model
given as ``--weights``, a weights file given as ``--model``, a training checkpoint, a folder) is named in one
line that says which command takes it, instead of a loader's own error (a pickle refusal, a protobuf parse
error, an unknown format tag).

Detection reads at most a few hundred kilobytes and never unpickles anything:

- ``torch.save`` / TorchScript / ``.pt2`` files are zip archives, told apart by their member names:
  TorchScript has ``*/code/`` and ``*/constants.pkl``, ``.pt2`` has ``*/archive_format`` (and
  ``*/models/*.json``), a ``torch.save`` has ``*/data.pkl``. Inside ``data.pkl`` the format tag is a plain
  string: ``ast-sampleid/1`` for our weights, ``ast-sampleid-checkpoint/...`` for a training checkpoint; an
  official AST checkpoint has state-dict keys such as ``module.v.patch_embed``.
- ONNX is a protobuf ``ModelProto``: the first fields are parsed (field numbers and wire types must be those
  of a ``ModelProto``, lengths must fit in the file).
- Folders: a Hugging Face model (``config.json`` + weights), a catalogue (``catalogue.json``), a training run
  (``modelo_audio.pth`` inside), or a plain folder.
- Audio by its magic bytes (RIFF/WAVE, FLAC, Ogg, MP3, AIFF).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FileKind", "describe_file", "detect_kind", "kind_mismatch"]

WEIGHTS_TAG = b"ast-sampleid/"
CHECKPOINT_TAG = b"ast-sampleid-checkpoint/"
OFFICIAL_AST_KEYS = (b"module.v.patch_embed", b"v.patch_embed", b"mlp_head.")
PICKLE_SCAN_BYTES = 1 << 20  # the format tag and the first keys sit at the start of data.pkl
HEADER_BYTES = 64
WEIGHTS_NAME = "modelo_audio.pth"
EXPORT_SUFFIXES = (".onnx", ".ts", ".pt2")
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
AUDIO_MAGIC = (b"RIFF", b"fLaC", b"OggS", b"ID3", b"FORM", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")
# ModelProto: field number -> wire type (0 varint, 2 length-delimited)
ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}
ONNX_FIELDS_CHECKED = 3


@dataclass(frozen=True)
class FileKind:
    """A detected file kind: ``name`` (a key), ``what`` (a noun phrase) and ``use`` (the command that takes it)."""

    name: str
    what: str
    use: str = ""


KINDS = {k.name: k for k in (
    FileKind("missing", "does not exist"),
    FileKind("weights", "an ast-sampleid weights file",
             "give it to `ast-export onnx --weights` or `ast-train --init-from`"),
    FileKind("checkpoint", "a training checkpoint", "for `ast-train --resume`"),
    FileKind("official_ast", "an official AST checkpoint", "convert it with `ast-export import ast FILE`"),
    FileKind("torch_pickle", "a PyTorch file that is not an ast-sampleid weights file"),
    FileKind("onnx", "an exported ONNX model", "give it to `ast-serve identify --model`"),
    FileKind("torchscript", "an exported TorchScript model",
             "check it with `ast-export verify`; `ast-serve` takes the .onnx export"),
    FileKind("pt2", "an exported .pt2 program", "check it with `ast-export verify`; `ast-serve` takes the .onnx export"),
    FileKind("hf_folder", "a Hugging Face model folder", "convert it with `ast-export import hf FOLDER`"),
    FileKind("catalogue", "a retrieval catalogue", "give it to `ast-serve identify --index`"),
    FileKind("run_dir", "a training run folder"),
    FileKind("directory", "a folder"),
    FileKind("audio", "an audio file", "give it to `ast-serve identify`"),
    FileKind("unknown", "of an unknown kind"),
)}


def detect_kind(path: str | os.PathLike) -> FileKind:
    """The kind of ``path`` (never raises for unreadable or odd files: they are ``unknown``)."""
    path = Path(path)
    if not path.exists():
        return KINDS["missing"]
    if path.is_dir():
        return KINDS[_folder_kind(path)]
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEADER_BYTES)
        if zipfile.is_zipfile(path):
            return KINDS[_zip_kind(path)]
    except (OSError, zipfile.BadZipFile, RuntimeError):
        return KINDS["unknown"]
    if head.startswith(AUDIO_MAGIC):
        return KINDS["audio"]
    if _looks_like_onnx(path):
        return KINDS["onnx"]
    return KINDS["unknown"]


def describe_file(path: str | os.PathLike, kind: FileKind | None = None) -> str:
    """One line: what ``path`` is and which command takes it (and the weights beside a checkpoint or in a run)."""
    kind = kind or detect_kind(path)
    name = os.fspath(path)
    if kind.name == "missing":
        return f"{name}: no such file"
    text = f"{name} is {kind.what}"
    weights = _weights_near(Path(path), kind)
    if kind.use:
        text += f" ({kind.use})" if weights else f": {kind.use}"
    if weights:
        text += f"; the weights are {weights}" + (" beside it" if kind.name == "checkpoint" else "")
    elif kind.name == "directory":
        text += ", not a file"
    model = _export_in(Path(path)) if kind.name in ("run_dir", "directory") else None
    if model:
        text += f"; the exported model is {model}"
    return text


def kind_mismatch(path: str | os.PathLike, accepted: tuple[str, ...]) -> str | None:
    """None when ``path``'s kind is in ``accepted`` or cannot be told (the loader then names the problem);
    otherwise the :func:`describe_file` line, for the caller to raise as its own one-line error."""
    kind = detect_kind(path)
    if kind.name in accepted or kind.name in ("unknown", "missing"):
        return None
    return describe_file(path, kind)


def _folder_kind(folder: Path) -> str:
    if (folder / "config.json").is_file() and any((folder / f).is_file() for f in HF_WEIGHT_FILES):
        return "hf_folder"
    if (folder / "catalogue.json").is_file():
        return "catalogue"
    if (folder / WEIGHTS_NAME).is_file():
        return "run_dir"
    return "directory"


def _zip_kind(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if any("/code/" in n for n in names) or any(n.endswith("/constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("/archive_format") for n in names):
            return "pt2"
        pickles = [n for n in names if n.endswith("data.pkl")]
        if not pickles:
            return "unknown"
        with archive.open(pickles[0]) as member:
            data = member.read(PICKLE_SCAN_BYTES)
    if CHECKPOINT_TAG in data:
        return "checkpoint"
    if WEIGHTS_TAG in data:
        return "weights"
    if any(key in data for key in OFFICIAL_AST_KEYS):
        return "official_ast"
    return "torch_pickle"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A protobuf varint at ``pos``: (value, next position); raises ValueError past the end or after 10 bytes."""
    value = shift = 0
    for i in range(pos, min(len(data), pos + 10)):
        value |= (data[i] & 0x7F) << shift
        shift += 7
        if not data[i] & 0x80:
            return value, i + 1
    raise ValueError("truncated varint")


def _looks_like_onnx(path: Path) -> bool:
    """The first fields parse as a ``ModelProto`` (right field numbers and wire types, lengths within the file)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        data = handle.read(PICKLE_SCAN_BYTES)
    pos, seen = 0, 0
    try:
        while pos < len(data) and seen < ONNX_FIELDS_CHECKED:
            tag, pos = _varint(data, pos)
            number, wire = tag >> 3, tag & 7
            if ONNX_FIELDS.get(number) != wire:
                return False
            value, pos = _varint(data, pos)
            if wire == 2:
                if pos + value > size:
                    return False
                pos += value
            seen += 1
    except ValueError:
        return False
    return seen == ONNX_FIELDS_CHECKED or (seen > 0 and pos == size)


def _weights_near(path: Path, kind: FileKind) -> str | None:
    """The weights file beside a checkpoint or inside a run folder, as the user would type it."""
    if kind.name == "checkpoint":
        candidate = path.parent / WEIGHTS_NAME
    elif kind.name in ("run_dir", "directory"):
        candidate = path / WEIGHTS_NAME
    else:
        return None
    return _shown(candidate) if candidate.is_file() else None


def _export_in(folder: Path) -> str | None:
    found = sorted(p for p in folder.glob("*.onnx") if p.is_file())
    return _shown(found[0]) if found else None


def _shown(path: Path) -> str:
    """``path`` as the user typed its folder, ``./`` in front of a bare name (``./modelo_audio.pth``)."""
    text = str(path)
    return text if os.sep in text else f".{os.sep}{text}"
