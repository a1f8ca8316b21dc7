"""Operations on one local store: save, history, fsck, gc, retention, usage, archives and version references."""
