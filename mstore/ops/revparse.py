"""Turn what a user types (ID, unique prefix, `version_<ID>`, tag, `TAG@{N}`, `TAG@{DATE}`, `latest`, `X~N`,
`best:METRIC`) into a version ID."""

from __future__ import annotations

from collections.abc import Callable

from ..diff.compare import declared_directions, metric_direction
from ..diff.ranking import check_metric_names, metric_value, sort_by_metric
from ..errors import AmbiguousReference, BadInput, InvalidName, VersionNotFound
from ..store import taglog
from ..store.layout import Store
from ..store.refs import RESERVED_NAMES, check_ref_syntax, check_tag_name, describe_bad, is_version_id
from ..store.versions import PREFIX, newest

MAX_LISTED = 5


BEST = "best:"  # `best:accuracy`: the version with the best value of that metric


def is_best(ref: str) -> bool:
    return ref.startswith(BEST)


def resolve(store: Store, ref: str) -> str:
    """Resolve `ref` against the published versions; raises VersionNotFound / AmbiguousReference."""
    if is_best(ref):
        return best(store, ref[len(BEST) :])

    def tag_of(name: str) -> str | None:
        return store.refs.tag(name) if (store.refs.tags_dir / name).exists() else None

    def history_of(name: str) -> list[taglog.Move]:
        return taglog.parse(store.refs.history_raw(name), f"refs/history/{name}")

    return resolve_in(ref, store.versions.ids(), tag_of, history_of)


def resolve_in(
    ref: str,
    ids: list[str],
    tag_of: Callable[[str], str | None],
    history_of: Callable[[str], list[taglog.Move]] | None = None,
) -> str:
    """Resolve `ref` against `ids` (oldest first), `tag_of(name)` giving a tag's target or None if no such tag,
    `history_of(name)` its recorded moves (oldest first) for `TAG@{...}`.

    Works for any set of versions: the local store's, or a remote's.
    """
    if is_best(ref):
        raise BadInput(f"{ref!r}: best:METRIC is chosen from the metadata of a local store (pull the versions first)")
    check_ref_syntax(ref)
    base, _, back = ref.partition("~")
    steps = int(back) if back else 0
    version_id = _resolve_past(base, ids, history_of) if "@{" in base else _resolve_base(base, ids, tag_of)
    if steps:
        index = ids.index(version_id) - steps
        if index < 0:
            older = ids.index(version_id)
            if older == 0:
                raise VersionNotFound(f"{ref!r}: {version_id} is the oldest version; there is none before it")
            raise VersionNotFound(f"{ref!r}: only {older} version(s) are older than {version_id}")
        version_id = ids[index]
    return version_id


def _resolve_past(base: str, ids: list[str], history_of: Callable[[str], list[taglog.Move]] | None) -> str:
    """`TAG@{N}` (what TAG named N moves ago) or `TAG@{DATE}` (what it named then, UTC), from its history."""
    name, _, spec = base.partition("@{")
    spec = spec.removesuffix("}")
    try:
        check_tag_name(name)
    except BadInput:
        raise VersionNotFound(f"{base!r}: only a tag has a history ({name!r} is not a tag name)") from None
    moves = history_of(name) if history_of is not None else []
    if not moves:
        raise VersionNotFound(f"{base!r}: no history is recorded for tag {name!r}")
    try:
        if spec.isdigit():
            target = taglog.at_steps(moves, int(spec), name)
        else:
            when = taglog.parse_when(spec)
            if when is None:
                raise BadInput(f"{base!r}: expected {name}@{{N}} or {name}@{{YYYY-MM-DD HH:MM}} (UTC)")
            target = taglog.at_time(moves, when, name)
    except LookupError as exc:
        raise VersionNotFound(str(exc)) from None
    if target not in ids:
        raise VersionNotFound(f"{base!r} names version {target}, which no longer exists")
    return target


def _resolve_base(base: str, ids: list[str], tag_of: Callable[[str], str | None]) -> str:
    if base in RESERVED_NAMES:  # `latest` is the newest published version (refs/latest mirrors it)
        found = newest(ids)
        if found is None:
            raise VersionNotFound("the store has no versions yet")
        return found
    if not base.startswith(PREFIX):
        target = tag_of(base)
        if target is not None:
            if target not in ids:
                raise VersionNotFound(f"tag {base!r} names version {target}, which does not exist")
            return target
    wanted = base[len(PREFIX) :] if base.startswith(PREFIX) else base
    if wanted in ids:
        return wanted
    matches = [i for i in ids if i.startswith(wanted)]
    if is_version_id(wanted):  # a whole ID that is gone must not quietly name another version (rm!)
        hint = f" (did you mean {', '.join(matches[:MAX_LISTED])}?)" if matches else ""
        raise VersionNotFound(f"version {wanted} does not exist{hint}")
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise VersionNotFound(f"no version or tag matches {base!r}")
    shown = ", ".join(matches[:MAX_LISTED]) + (" …" if len(matches) > MAX_LISTED else "")
    raise AmbiguousReference(f"{base!r} matches {len(matches)} versions ({shown}); type more of the ID")


def best(store: Store, metric: str) -> str:
    """The version with the best `metric` (highest accuracy, lowest loss: `ranking`, with the directions
    saves declared); the newest of equals. Reads every version's metadata."""
    describe = describe_bad(metric)
    if not metric or describe:
        raise InvalidName(f"invalid version reference {BEST + metric!r}: {describe or 'name a metric after best:'}")
    entries = []
    for version_id in reversed(store.versions.ids()):
        try:
            entries.append(store.versions.read(version_id))
        except VersionNotFound:  # removed while we listed
            continue
    if not entries:
        raise VersionNotFound("the store has no versions yet")
    check_metric_names([metric], entries, lambda: entries)
    if metric_direction(metric, declared_directions(*reversed(entries))) is None:
        raise BadInput(
            f"{BEST + metric!r}: cannot tell whether a higher or a lower {metric!r} is better; declare it when "
            "saving ({higher} or {lower})",
            higher=(f"--higher-is-better {metric}", f"metric_directions={{{metric!r}: 'higher'}}"),
            lower=(f"--lower-is-better {metric}", f"metric_directions={{{metric!r}: 'lower'}}"),
        )
    ranked = sort_by_metric(entries, metric, None)
    if metric_value(ranked[0], metric) is None:
        raise VersionNotFound(f"no version has a number for metric {metric!r}")
    return str(ranked[0]["timestamp"])
