"""The leaf of the package: errors, the registry, file writes and environment facts.

Nothing here imports another part of gocram, so every room (data, models, train, eval, ablations)
can depend on it without cycles (tests/test_imports.py checks the whole import graph).
"""
