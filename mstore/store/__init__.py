"""The on-disk store, as docs/format.md specifies it.

- `fsutil.py`: the only code that writes store files (temp file, fsync, rename), locks, bounded reads;
- `codec.py`: how an object's bytes are kept (raw, zstd, byte planes, XOR deltas) in a small envelope;
- `objects.py`: content-addressed objects named by their blake3, verified on every read;
- `chunking.py`: how a file is cut into objects (at tensor boundaries, else by FastCDC);
- `manifest.py`: a model's files and the objects that hold each one;
- `metadata.py`, `versions.py`: `version_<ID>/metadata.json` (the seed's document) and its checksum;
- `refs.py`: `latest` and tags, each a checksummed one-line file;
- `layout.py`: `Store`, the directory that holds all of them, its config and its locks;
- `commit.py`: the one order in which a version enters (objects, then one rename, then refs) and leaves.
"""
