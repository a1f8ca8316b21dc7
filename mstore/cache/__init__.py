"""The verified, read-only model cache behind `mstore.model_path` and `mstore path`.

- `entries.py`: `Cache`: its layout, entries written once and stamped, use locks, resolutions (offline);
- `upkeep.py`: its size, eviction as `plan_eviction` -> `execute`, and `verify` (reports) -> `repair`.
"""
