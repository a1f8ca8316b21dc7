"""What changed between two versions, and which one to choose.

- `compare.py`: time, hash, metadata, metrics, categories, lineage and files of two versions;
- `configdiff.py`: key-level diff of the small configs in a model folder (config.json, .toml);
- `tensordiff.py`: tensor-level diff (added, removed, changed, and how much);
- `lineage.py`: what trained a model (training data hash, git commit), recorded at save and compared;
- `environment.py`: who saved a version and where (Python, platform, package versions), recorded and compared;
- `ranking.py`: versions ordered best first by a metric, and metric names checked with a "did you mean".
"""
