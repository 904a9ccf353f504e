"""graphformer benchmark suites: ``python -m benchmarks.run --help``."""
