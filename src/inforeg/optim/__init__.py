"""inforeg.optim (see DESIGN.md for what belongs here)."""
