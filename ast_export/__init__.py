"""ast_export."""
