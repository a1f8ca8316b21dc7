"""The seed's Python API, unchanged in shape: swap the import and existing scripts keep working.

from mstore import ModelVersioning
mv = ModelVersioning(base_dir="data/models")
meta = mv.save_model_version("model.joblib", {"metrics": {...}, "num_samples": 1200})
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import InvalidMetadata
from .modelpath import model_path, offline_mode
from .ops.fsck import Report
from .ops.gc import DEFAULT_GRACE_SECONDS, GcPlan
from .ops.trust import KeySpec
from .repository import Repository
from .store.layout import CONFIG

SEED_KEYS = ("timestamp", "model_hash", "original_path")


class ModelVersioning:
    """Versioned model storage in `base_dir`, created by the first save.

    Constructing one writes nothing: a mistyped `base_dir` must not leave an empty store behind that
    later reads mistake for the real one. Until the first save, `list_versions()` and
    `get_latest_version()` answer as for an empty store (as the seed did); anything that needs a version
    raises StoreNotFound naming the path.
    """

    def __init__(self, base_dir: str | os.PathLike[str] = "data/models") -> None:
        self.base_dir = Path(base_dir)
        self._repo: Repository | None = None

    @property
    def repo(self) -> Repository:
        """The store (opened on first use; StoreNotFound when nothing was saved in `base_dir` yet)."""
        if self._repo is None:
            self._repo = Repository.open(self.base_dir)
        return self._repo

    def _exists(self) -> bool:
        return self._repo is not None or (self.base_dir / CONFIG).exists()

    def save_model_version(
        self,
        model_path: str | os.PathLike[str],
        metadata: dict[str, Any] | None = None,
        *,
        message: str | None = None,
        refuse_unsafe: bool = False,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Save a model file or directory; returns the new version's metadata.

        Like the seed, the `metadata` dict you pass is updated in place with `timestamp`,
        `model_hash` and `original_path`. Pickles' unsafe globals are in `meta["mstore"]["unsafe_globals"]`;
        `refuse_unsafe=True` raises UnsafeModel instead of saving such a model. `params` (training
        parameters, e.g. `{"C": 0.3}`) are stored as the metadata's `params`, beside `metrics`; declare which
        way a metric is better with `{"metric_directions": {"latency": "lower"}}` in the metadata.
        """
        record: Mapping[str, Any] | None = metadata
        if params is not None:
            if not isinstance(params, Mapping):
                raise InvalidMetadata(f"params must be a mapping of names to values, not {type(params).__name__}")
            given = (metadata or {}).get("params", {})
            record = {**(metadata or {}), "params": {**given, **params} if isinstance(given, dict) else given}
        if self._repo is None:
            self._repo = Repository.init(self.base_dir)
        meta = self.repo.save(model_path, record, message=message, refuse_unsafe=refuse_unsafe)
        if isinstance(metadata, dict):
            metadata.update({k: meta[k] for k in SEED_KEYS})
        return meta

    def _on(self, remote: str | None) -> Repository:
        """The store, or a read-only view of `remote` (a remote's NAME here, or a URL; no clone: metadata only)."""
        if remote is None:
            return self.repo
        return Repository.browse(remote, store=self.base_dir, offline=offline_mode(None))

    def get_model_version(self, version: str, *, remote: str | None = None) -> dict[str, Any]:
        """Metadata of a version: full ID, unique prefix, `latest`, `latest~N` or a tag (on `remote`: NAME|URL,
        read without cloning it)."""
        return self._on(remote).get(version)

    def list_versions(self, *, remote: str | None = None) -> list[dict[str, Any]]:
        """Metadata of every version, newest first, each with its `tags` (as `log()` gives them); of `remote`
        (NAME|URL) when given, fetching only its metadata."""
        if remote is not None:
            return self._on(remote).log()
        return self.repo.log() if self._exists() else []

    def get_latest_version(self) -> dict[str, Any] | None:
        """Metadata of the newest version, or None if nothing was saved yet."""
        return self.repo.latest() if self._exists() else None

    def compare_versions(
        self, version1: str, version2: str | None = None, *, remote: str | None = None
    ) -> dict[str, Any]:
        """What changed from `version1` to `version2`: time_diff (seconds), same_model, metadata,
        metrics (old/new/delta, nested dicts flattened to dotted names), categories and files.
        With `version1` alone: what changed in it, from its parent (as `git show`). On `remote` (NAME|URL)
        when given, without cloning it."""
        return self._on(remote).compare(version1, version2)

    diff = compare_versions

    def log(
        self,
        *,
        limit: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: list[str] | None = None,
        sort: str | None = None,
        descending: bool | None = None,
        where: str | None = None,
        remote: str | None = None,
    ) -> list[dict[str, Any]]:
        """Versions newest first (what `mstore log --json` prints), each with its `tags`; of `remote` (NAME|URL)
        when given, without cloning it.

        `sort="accuracy"` ranks them best first by that metric (accuracy/f1 higher, loss/error lower;
        `descending=True/False` to choose), so `log(sort="accuracy", limit=1)[0]` is the best model.
        `where="accuracy>0.95 and C<1"` keeps the versions whose metrics and params satisfy it.
        """
        return self._on(remote).log(
            limit=limit, since=since, until=until, tags=tags, sort=sort, descending=descending, where=where
        )

    def show(self, version: str = "latest", *, remote: str | None = None) -> dict[str, Any]:
        """Metadata, files and bytes shared with the parent (what `mstore show --json` prints); on `remote`
        (NAME|URL) when given, without cloning it."""
        return self._on(remote).show(version)

    def du(self, largest: int = 10) -> dict[str, Any]:
        """Logical vs on-disk bytes and what each version alone holds (what `mstore du --json` prints)."""
        return self.repo.du(largest)

    def prune(
        self, *, keep_last: int | None = None, keep_within: float | None = None, dry_run: bool = False
    ) -> list[str]:
        """Remove versions outside the retention rules (tagged and newest kept); returns the removed IDs."""
        plan, _ = self.repo.prune(keep_last=keep_last, keep_within=keep_within, dry_run=dry_run)
        return list(plan.remove)

    def checkout(
        self,
        version: str,
        dest: str | os.PathLike[str],
        *,
        force: bool = False,
        allow_unsafe: bool | None = None,
        trusted_keys: KeySpec = None,
    ) -> Path:
        """Restore a version's model to `dest`, verified bit-exact; returns the path written. Unsafe pickles
        are refused as by `get_model_path` (UnsafeModel, nothing written) unless `allow_unsafe=True`; with
        trusted keys (`trusted_keys`, else MSTORE_TRUSTED_KEYS), so is a version none of them signed."""
        return self.repo.checkout(version, dest, force=force, allow_unsafe=allow_unsafe, trusted_keys=trusted_keys)

    restore = checkout

    def get_model_path(
        self,
        version: str = "latest",
        *,
        remote: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        offline: bool | str | None = None,
        allow_unsafe: bool | None = None,
        trusted_keys: KeySpec = None,
    ) -> Path:
        """The path of a version's model inside the read-only cache (see `mstore.model_path`):
        materialised and verified once, then answered from a stamp check; unsafe pickles and, with trusted
        keys, versions none of them signed are refused alike."""
        return model_path(
            version,
            store=self.base_dir,
            remote=remote,
            cache_dir=cache_dir,
            offline=offline,
            allow_unsafe=allow_unsafe,
            trusted_keys=trusted_keys,
        )

    def tag(self, name: str, version: str = "latest", *, force: bool = False) -> str:
        """Name a version; returns its ID."""
        return self.repo.tag(name, version, force=force)

    def delete_version(self, version: str, *, force: bool = False) -> str:
        """Remove a version (run `gc` to free its unshared bytes); returns its ID."""
        return self.repo.remove(version, force=force)[0]

    def fsck(self, *, verify_data: bool = True) -> Report:
        return self.repo.fsck(verify_data=verify_data)

    def gc(self, *, dry_run: bool = False, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> GcPlan:
        return self.repo.gc(dry_run=dry_run, grace_seconds=grace_seconds)
