"""serving: the torch-free runtime behind ``ast-serve`` (numpy, onnxruntime, soundfile, soxr, click, tqdm).

The exported ``.onnx`` graph is the only input (DESIGN.md, "Exported graph"). Modules, in data order:

- :mod:`serving.audio`: any libsndfile file -> mono float32 blocks at the model's rate (streamed, soxr).
- :mod:`serving.windows`: fixed windows from the stream; windows of many files batched together.
- :mod:`serving.session`: the validated ONNX Runtime session (providers, threads, IO binding).
- :mod:`serving.matches`: per-window probabilities -> top-k samples with score and time span.
- :mod:`serving.identify`: the pipeline, one :class:`~serving.matches.SongResult` per input, in order.
- Retrieval (``ast-serve index``, ``identify --index``): :mod:`serving.vectors` (the FAISS store),
  :mod:`serving.catalogue_format` (the folder on disk), :mod:`serving.catalogue` (opened and checked),
  :mod:`serving.catalogue_build` (build/add), :mod:`serving.embedding`, :mod:`serving.voting`,
  :mod:`serving.verify_align`, :mod:`serving.calibration`, :mod:`serving.retrieval`, :mod:`serving.index_cli`.
- :mod:`serving.output`, :mod:`serving.plot`, :mod:`serving.report`, :mod:`serving.cli`.

Decisions a user may want to know:

- Default model: ``$AST_SAMPLEID_MODEL``, else ``runs/demo/modelo_audio.onnx`` relative to the current folder.
- Default format: ``table`` on a terminal, ``jsonl`` otherwise (streamed, one object per input).
- Every argument gets one result, in order: the same path twice is scored twice; a directory, a missing file
  (e.g. an unmatched glob) or an undecodable file is a per-file error, never a crash.
- NaN/Inf samples in float files are replaced by 0 with one warning per file; out-of-range samples are clipped.
- Non-UTF-8 file names are accepted; in output their undecodable bytes appear as ``\\xNN`` escapes.
"""
