"""What changed between two versions: metadata and metrics, config keys, tensors, lineage, and ranking by a metric."""
