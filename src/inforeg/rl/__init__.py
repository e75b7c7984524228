"""inforeg.rl (see DESIGN.md for what belongs here)."""
