"""ast_export: the scoring graph (waveform -> probs, embedding) as ONNX, TorchScript and ``.pt2``, verified.

Layout: ``registry`` lists the formats, one ``artifact.ArtifactFormat`` record each (``onnx_export``,
``torchscript_export``, ``pt2_export``); ``commands`` generates ``ast-export <format>`` from the records and
``pipeline`` runs the one export-and-verify path (``writer`` writes, ``verify`` checks, ``verify_inputs`` /
``heldout`` / ``signals`` supply the windows). ``importers/`` converts community checkpoints.

Decisions a user should know (DESIGN.md leaves them to us):

- The ONNX graph comes from the dynamo exporter (opset 18) with attention in eager form, so ORT fusions apply;
  the legacy exporter is only a fallback and is also verified (it is not trusted blindly).
- Every export is verified unless ``--no-verify``: eager vs artifact on real audio windows (or deterministic
  test signals, with a warning) plus noise, silence, full-scale clipping and a chirp at batch 1/3/8; a miss
  exits 1 (``ast-export verify`` does the same on demand).
- fp32 bars (each format's record): ORT probs 1e-5 / embedding 1e-4 / top-1 identical; TorchScript and .pt2
  probs 1e-6 / embedding 1e-5 (same kernels as eager). The ORT-optimised graph keeps the fp32 ORT bar.
- ``--precision fp16|int8`` is judged on decisions: top-1 agreement >= 99 % on held-out windows and song-level
  accuracy drop <= 0.5 pt (test split of ``--manifest``, else data/demo). Without labelled songs only agreement
  is measured (on ``--audio`` or test signals) and a WARNING says the accuracy bar was not checked. Their
  frontend stays fp32 (the power spectrum overflows fp16; int8 would erase its quiet bins).
- ``--optimize`` tries ORT's transformer optimizer first and, when it fuses less than every layer (its patterns
  predate dynamo graphs), onnxscript's ORT fusions (-> ``MultiHeadAttention``); the count is logged and stored
  in the metadata (``transform.fused_attention`` of ``transform.layers``).
- Only typed errors are one line (``cli_common.EXPECTED_ERRORS``); anything else keeps its traceback.
"""
