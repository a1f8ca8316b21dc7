"""Which objects of the parent version a new save may encode its tensors against (as XOR deltas).

The parent's tensor files are indexed from the store (headers only) and cut by the same chunker, so
each tensor piece of the parent is found as the chunk at the same offset with the same length.
"""

from __future__ import annotations

from ..errors import MStoreError
from ..store.chunking import ModelAwareChunker
from ..store.layout import Store
from ..store.manifest import KIND_FILE
from .ingest import ParentPieces
from .storedfile import StoredFile, stored_external_tensors


def parent_pieces(store: Store, parent_id: str | None) -> ParentPieces:
    chunker = store.chunker
    if parent_id is None or not isinstance(chunker, ModelAwareChunker):
        return {}
    try:
        manifest = store.version_manifest(parent_id)
    except MStoreError:  # a damaged parent only costs the deltas, never the save
        return {}
    out: ParentPieces = {}
    external = stored_external_tensors(manifest, store.objects)
    for entry in manifest.files:
        reader = StoredFile(entry, store.objects)
        at_offset: dict[tuple[int, int], str] = {}
        offset = 0
        for chunk in entry.chunks:
            at_offset[(offset, chunk.size)] = chunk.oid
            offset += chunk.size
        path = "" if manifest.kind == KIND_FILE else entry.path
        try:
            tensors = chunker.tensor_regions(reader.read, entry.path, entry.size, external.get(entry.path, ()))
        except MStoreError:  # a damaged parent only costs the deltas, never the save
            continue
        for tensor in tensors:
            for piece_offset, length, _, key in chunker.tensor_pieces(tensor):
                oid = at_offset.get((piece_offset, length))
                if oid is not None:
                    out[(path, key)] = oid
    return out
