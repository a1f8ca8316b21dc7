"""One exception tree for mstore: each error carries its one-line message and its CLI exit code."""

from __future__ import annotations

EXIT_PROBLEM = 1  # the store or an operation found a problem (corruption, fsck errors, I/O)
EXIT_USAGE = 2  # the user asked for something invalid (bad path, unknown ref, bad name)


class MStoreError(Exception):
    """Root of every error mstore raises on purpose.

    A message that tells the user what to change names the option in the caller's own terms:
    `TagExists("... (use {force} to move it)", force=("--force", "force=True"))` reads
    `use force=True` from Python (`str(exc)`, `exc.message`) and `use --force` in the CLI (`exc.cli_message`).
    """

    exit_code = EXIT_PROBLEM

    def __init__(self, message: str, **options: tuple[str, str]) -> None:
        self.cli_message = _fill(message, {k: cli for k, (cli, _) in options.items()})
        self.message = _fill(message, {k: py for k, (_, py) in options.items()})
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.message


def _fill(template: str, words: dict[str, str]) -> str:
    """Replace `{name}` placeholders only (not str.format: messages quote paths that may hold braces)."""
    for name, word in words.items():
        template = template.replace("{" + name + "}", word)
    return template


class MStoreWarning(UserWarning):
    """Something worth knowing that did not stop the operation (the CLI prints it as `mstore: warning: ...`)."""


class BadInput(MStoreError):
    """The request itself is invalid; nothing was changed."""

    exit_code = EXIT_USAGE


class InvalidName(BadInput, ValueError):
    """A tag, version reference or path component is not acceptable."""


class VersionNotFound(BadInput, KeyError):
    """No version matches the reference."""


class AmbiguousReference(BadInput, KeyError):
    """A version-ID prefix matches more than one version."""


class NotInModel(BadInput, KeyError):
    """The version has no file or tensor of that name, or a glob matches none of its files."""


class SourceNotFound(BadInput):
    """The model path to save does not exist or is not a regular file or directory."""


class UnsupportedSource(BadInput):
    """The model path holds something mstore refuses to store (a symlink, a device, a socket)."""


class InvalidMetadata(BadInput, ValueError):
    """User metadata cannot be stored as JSON (not serialisable, NaN, reserved key)."""


class DestinationExists(BadInput):
    """Checkout would overwrite existing files without --force."""


class StoreNotFound(BadInput):
    """The directory is not an mstore store."""


class UnsupportedFormat(BadInput):
    """The store was written by a newer mstore format than this one understands."""


class TagNotFound(BadInput, KeyError):
    """No tag has this name."""


class RemoteNotFound(BadInput, KeyError):
    """No remote has this name."""


class RemoteExists(BadInput):
    """A remote with this name is already configured."""


class TagExists(BadInput):
    """The tag already names a version; use force to move it."""


class VersionIsTagged(BadInput):
    """Removing a tagged version needs force (which removes its tags)."""


class UnsafeModel(BadInput):
    """The model holds a pickle that references globals outside the known-safe set, and the save was
    asked to refuse such models (`--refuse-unsafe`); nothing was saved."""


class UnsafeToLoad(UnsafeModel):
    """`model_path`, `mstore path` or `checkout` was asked for a version whose pickles are unsafe or unknown,
    without `allow_unsafe` / `--allow-unsafe` / MSTORE_ALLOW_UNSAFE=1; nothing was written (exit 1: the
    store's content is the problem, not the request)."""

    exit_code = EXIT_PROBLEM


class SourceChanged(MStoreError):
    """The model file changed while it was being saved; nothing was published."""


class IntegrityError(MStoreError):
    """Stored data does not match its hash or its declared structure."""


class CorruptObject(IntegrityError):
    """An object's bytes do not hash to its name."""


class MissingObject(IntegrityError):
    """An object a version needs is not in the store."""


class DamagedDeltaBase(IntegrityError):
    """An object is intact but is stored as a delta against an object that is damaged or missing."""


class CorruptManifest(IntegrityError):
    """A manifest object does not decode to a valid manifest."""


class CorruptVersion(IntegrityError):
    """A version's metadata is unreadable or does not match its checksum."""


class CorruptConfig(IntegrityError):
    """mstore.json (a store's or a remote's) is unreadable, invalid, or does not match its own checksum."""


class UnsafeStoreFile(IntegrityError):
    """A store file is a symlink, FIFO, device or directory where mstore keeps a regular file, or too large."""


class UnsafeLayout(IntegrityError):
    """A directory of the store's layout is a symlink or not a directory (mstore never creates either)."""


class CorruptRef(IntegrityError):
    """A ref file is unreadable, fails its checksum, or names no version."""


class VersionConflict(MStoreError):
    """Both stores hold a version with this ID, with different content."""

    version_id: str = ""

    @classmethod
    def of(cls, version_id: str) -> VersionConflict:
        error = cls(
            f"version {version_id} exists on both sides with different content (two stores saved in the same "
            "second); save that model again to give it a new ID, then remove it here with {rm}",
            rm=(f"`mstore rm {version_id}`", f"delete_version({version_id!r})"),
        )
        error.version_id = version_id
        return error


class GcRefused(MStoreError):
    """gc found unreadable metadata or manifests and deleted nothing (it fails closed)."""


class NotCached(MStoreError):
    """Offline, and the model asked for was never resolved into the cache."""


class NotACache(BadInput):
    """The cache directory holds something else (no CACHEDIR.TAG in a non-empty directory)."""
