"""Tools that measure batchmt (not part of the server wheel): ``python -m benchmarks.bench``,
``python -m benchmarks.ensemble_eval``."""
