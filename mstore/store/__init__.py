"""The on-disk store that docs/format.md specifies: durable writes, codecs, objects, chunking, manifests,
metadata, refs, versions, the layout and the commit protocol."""
