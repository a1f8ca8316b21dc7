"""The other side: remotes that versions travel to and from, and what runs against them.

- `bucket.py`: the small key-value interface a remote needs (`Bucket`), and `MemoryBucket`, its reference;
- `s3.py`: `S3Bucket`, the same over S3 with conditional writes (imported only when an S3 remote is used);
- `remotes.py`: `Remote` (what push, pull and the remote checks need) over a directory or a bucket;
- `transfer.py`: push, pull and clone; `check.py`: `fsck --remote` and `gc --remote`; `prune.py`:
  `rm` and `prune --remote`.

Nothing in the local store (every module below `repository.py`) imports this package, a contract in
pyproject.toml checks it; boto3 loads only when an S3 remote is used.
"""
