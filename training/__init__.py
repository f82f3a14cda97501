"""training: the loop, the losses and ``ast-train`` (DESIGN.md §1).

- :mod:`training.cli` (``ast-train``), :mod:`training.train` (a run end to end), :mod:`training.loop` (the
  steps, validation, checkpoint state), :mod:`training.config` (``TrainConfig``, presets, config files),
  :mod:`training.checkpoint`, :mod:`training.metrics`, :mod:`training.model_setup`, :mod:`training.ema`,
  :mod:`training.distributed`, :mod:`training.out_dir`, :mod:`training.errors`.
- :mod:`training.data`: manifest, decoding, training windows, augmentation, the music synthesiser, demo data.

The rules shared with serving (decoding, windows, default hop, song scores, manifest names, atomic writes)
are imported from ``serving.contract``, never re-implemented here.
"""
