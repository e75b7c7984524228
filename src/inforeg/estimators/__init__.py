"""inforeg.estimators (see DESIGN.md for what belongs here)."""
