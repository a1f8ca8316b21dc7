"""Files -> objects -> files.

- `ingest.py`: a model file or folder read once into objects and a manifest;
- `restore.py`: a manifest written back to disk, every chunk verified before its bytes are written;
- `storedfile.py`: a stored file read by offset, fetching only the chunks that cover the range;
- `select.py`: which files of a model a caller asked for (exact names, include / exclude globs);
- `parents.py`: the parent version's tensor pieces a save may delta against;
- `statcache.py`: git-index-like stat cache, so an unchanged file is not read again.
"""
