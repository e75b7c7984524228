"""inforeg.dependence (see DESIGN.md for what belongs here)."""
