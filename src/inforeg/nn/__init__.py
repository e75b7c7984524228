"""inforeg.nn (see DESIGN.md for what belongs here)."""
