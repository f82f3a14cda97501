"""Parity tolerances shared by every test (DESIGN.md section 3). Change them here, nowhere else."""

# Frontend (KaldiFbank) vs torchaudio.compliance.kaldi.fbank, after waveform mean removal.
FBANK_F64_MAX_ABS = 1e-6
FBANK_F32_MAX_ABS = 5e-3  # on log-mel
FBANK_F32_MEAN_ABS = 1e-4

# TorchScript / .pt2 vs eager.
TS_PROBS_MAX_ABS = 1e-6

# ONNX Runtime (CPU, or CUDA with TF32 off) vs eager, fp32.
ORT_PROBS_MAX_ABS = 1e-5
ORT_EMBED_MAX_ABS = 1e-4

# fp16 / int8 variants on held-out songs.
VARIANT_TOP1_AGREEMENT = 0.99
VARIANT_ACC_DROP = 0.005

# Imported Hugging Face AST checkpoint vs transformers' ASTForAudioClassification.
HF_PARITY_MAX_ABS = 1e-4
