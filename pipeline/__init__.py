"""DVC training pipeline: prepare -> train -> evaluate."""
