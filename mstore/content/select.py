"""Which files of a model a caller asked for: exact names and globs in and out, checked against the manifest.

The rules are huggingface_hub's `snapshot_download(allow_patterns=, ignore_patterns=)`, so a pattern
written for one works in the other: a pattern is matched against each file's `/`-separated path inside
the model with `fnmatch` (case-sensitive; `*` crosses `/`, so `*.json` matches `sub/config.json`), and a
pattern ending in `/` means everything under that folder. `files` are exact paths. A file is chosen when
it is named in `files` or matches an `include` pattern (or both are absent: every file), and no `exclude`
pattern matches it. A typo must never look like an answer, so a name the model lacks, an include pattern
that matches no file, and a selection left empty are each an error naming the nearest paths, never an
empty folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from ..errors import BadInput, NotInModel
from ..humanize import nearest
from ..store.manifest import Manifest


def _pattern(text: str) -> str:
    if not isinstance(text, str) or not text:
        raise BadInput(f"{text!r} is not a file pattern")
    return text + "*" if text.endswith("/") else text


def choose(
    manifest: Manifest,
    files: Sequence[str] | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> frozenset[str] | None:
    """The paths of the model's files that were asked for, or None when nothing narrows the choice (every
    file: the whole model). Raises NotInModel for an unknown name or a pattern that matches nothing."""
    for arg, name in ((files, "files"), (include, "include"), (exclude, "exclude")):
        if isinstance(arg, str):  # include="*.json" would otherwise be read as six one-letter patterns
            raise BadInput(f"{name}= takes a list of strings, not one string: {name}=[{arg!r}]")
    if files is None and include is None and not exclude:
        return None
    paths = [e.path for e in manifest.files]
    known = set(paths)
    chosen: set[str] = set()
    for name in files or ():
        if name not in known:
            raise NotInModel(f"the model has no file {name!r}{nearest(str(name), paths)}")
        chosen.add(name)
    for text in include or ():
        pattern = _pattern(text)
        matched = [p for p in paths if fnmatchcase(p, pattern)]
        if not matched:
            raise NotInModel(f"the pattern {text!r} matches no file of the model{nearest(text, paths)}")
        chosen.update(matched)
    if files is None and include is None:
        chosen = set(paths)
    for text in exclude or ():
        pattern = _pattern(text)
        chosen = {p for p in chosen if not fnmatchcase(p, pattern)}
    if not chosen:
        raise NotInModel(
            f"the exclude pattern(s) {', '.join(map(repr, exclude or ()))} leave no file of the model to give"
        )
    return frozenset(chosen)
