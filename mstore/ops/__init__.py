"""What a user does to one local store, as functions of a `Store` (Repository delegates here).

- `save.py`: plan (everything that can be refused) -> write objects -> commit;
- `history.py`: `log` (filtered, ranked) and `show`; `revparse.py`: what a version reference names;
- `tags.py`: tag and untag; `remove.py`: `rm` and `prune` (`retention.py`: which versions prune keeps);
- `fsck.py` (with `problems.py`, the one problem type local and remote checks share), `gc.py`: scan ->
  plan -> execute; `usage.py`: `du`;
- `archive.py`: `.mstore` archives (export, verify-then-import) and plain exports.
"""
