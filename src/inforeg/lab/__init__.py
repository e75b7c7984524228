"""The lab wing: the workbench that checks the library (CLI, method registry, experiments,
benchmarks, embedded data sets). No module under ``inforeg.core`` or a technique family imports
it; ``tests/lab/test_boundary.py`` enforces that.
"""
