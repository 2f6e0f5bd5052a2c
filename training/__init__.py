"""Training recipes, data sets, checkpoints, evaluation and export (needs the [training] extra)."""
