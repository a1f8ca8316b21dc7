"""Files -> objects -> files: ingesting a model, restoring it, reading a stored file by offset, the parent's
pieces and the stat cache."""
