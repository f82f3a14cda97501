"""``ast-export import``: community AST checkpoints (Hugging Face folders, official YuanGongND/ast ``.pth``)
into our weights file.

- :mod:`ast_export.importers.remap`: the pure key remapping and config inference (one function per source);
- :mod:`ast_export.importers.files`: reading checkpoint folders, ``.pth`` files and label CSVs;
- :mod:`ast_export.importers.cli`: the click command.
"""

from ast_export.errors import CheckpointImportError
from ast_export.importers.remap import (
    ImportOptions,
    ast_checkpoint_filter_fn,
    hf_checkpoint_filter_fn,
    hf_config_to_ast,
    import_hf,
    import_official,
    infer_official_config,
)

__all__ = [
    "CheckpointImportError", "ImportOptions", "ast_checkpoint_filter_fn", "hf_checkpoint_filter_fn",
    "hf_config_to_ast", "import_hf", "import_official", "infer_official_config",
]
