"""Accuracy on real audio: ``sampleid_eval`` (classifier output vs a manifest), ``retrieval_eval`` (the full-records retrieval benchmark), ``fbank_parity`` (frontend vs torchaudio's Kaldi fbank)."""
