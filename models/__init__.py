"""models: the AST architecture, its Kaldi frontend, the scoring wrapper and weight I/O.

Import the public API from here::

    from models import AST, KaldiFbank, ScoringModel, get_config, load_weights, build_scoring_model
"""

from models.ast import AST, resize_pos_embed
from models.config import (
    AUDIOSET_MEAN,
    AUDIOSET_STD,
    PRESETS,
    ASTConfig,
    FbankConfig,
    get_config,
    window_samples,
)
from models.fbank import KaldiFbank
from models.scoring import ScoringModel
from models.weights import (
    WEIGHTS_FORMAT,
    WeightsError,
    WeightsFile,
    build_scoring_model,
    load_weights,
    save_weights,
    weights_sha256,
)

__all__ = [
    "AST",
    "AUDIOSET_MEAN",
    "AUDIOSET_STD",
    "PRESETS",
    "WEIGHTS_FORMAT",
    "ASTConfig",
    "FbankConfig",
    "KaldiFbank",
    "ScoringModel",
    "WeightsError",
    "WeightsFile",
    "build_scoring_model",
    "get_config",
    "load_weights",
    "resize_pos_embed",
    "save_weights",
    "weights_sha256",
    "window_samples",
]
