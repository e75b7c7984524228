"""inforeg.ot (see DESIGN.md for what belongs here)."""
