"""Who saved a version and where: the actor, the Python and platform, and the versions of the packages
that write models, recorded at save time and compared by `diff`.

"scikit-learn 1.5.2 -> 1.6.0" answers many "why does it load differently" questions. Package versions come
from the installed distributions' metadata (`importlib.metadata`): nothing is imported, so recording them
costs milliseconds and never runs a package's import-time code. A package that is not installed is left out.

Stored in the version's mstore block: `saved_by` (a string) and `environment`
{"python": "3.11.9", "platform": "Linux x86_64", "packages": {"scikit-learn": "1.5.2", ...}}.
Versions saved before these existed (or pulled from a writer that put odd types there) show nothing.
"""

from __future__ import annotations

import platform
from importlib import metadata as _importlib_metadata
from typing import Any

from ..humanize import safe

PACKAGES = ("scikit-learn", "joblib", "torch", "transformers", "numpy", "safetensors")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """{name: version} of those of `names` that are installed (never importing them)."""
    out: dict[str, str] = {}
    for name in names:
        try:
            version = _importlib_metadata.version(name)
        except (_importlib_metadata.PackageNotFoundError, ValueError, OSError):
            continue
        if isinstance(version, str) and version:
            out[name] = version
    return out


def collect() -> dict[str, Any]:
    """This process's environment as a save records it."""
    return {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}".strip() or "unknown",
        "packages": package_versions(),
    }


# -- reading (metadata from other writers: anything of an odd type is left out) -------------------


def saved_by_of(meta: dict[str, Any]) -> str | None:
    block = meta.get("mstore")
    value = block.get("saved_by") if isinstance(block, dict) else None
    return value if isinstance(value, str) and value else None


def environment_of(meta: dict[str, Any]) -> dict[str, Any]:
    """The version's environment with only well-typed parts ({} when none was recorded)."""
    block = meta.get("mstore")
    value = block.get("environment") if isinstance(block, dict) else None
    if not isinstance(value, dict):
        return {}
    out: dict[str, Any] = {k: value[k] for k in ("python", "platform") if isinstance(value.get(k), str)}
    packages = value.get("packages")
    if isinstance(packages, dict):
        out["packages"] = {str(k): v for k, v in packages.items() if isinstance(v, str)}
    return out


def diff_environment(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What changed in who saved and where: `saved_by`, python, platform and each package
    ({"old", "new"} per changed item; a package only one version recorded is old or new None)."""
    a, b = environment_of(old), environment_of(new)
    changed: dict[str, dict[str, Any]] = {}
    for key in ("python", "platform"):
        if key in a and key in b and a[key] != b[key]:
            changed[key] = {"old": a[key], "new": b[key]}
    packages: dict[str, dict[str, Any]] = {}
    if "packages" in a and "packages" in b:  # both recorded: a package in only one was added or removed
        pa, pb = a["packages"], b["packages"]
        for name in [*pa, *(n for n in pb if n not in pa)]:
            if pa.get(name) != pb.get(name):
                packages[name] = {"old": pa.get(name), "new": pb.get(name)}
    who_a, who_b = saved_by_of(old), saved_by_of(new)
    saved_by = {"old": who_a, "new": who_b} if who_a and who_b and who_a != who_b else None
    return {"saved_by": saved_by, "changed": changed, "packages": packages}


# -- in words -------------------------------------------------------------------------------------


def environment_text(env: dict[str, Any]) -> str:
    """`Python 3.11.9 on Linux x86_64; numpy 2.1.0, scikit-learn 1.5.2` (empty when nothing was recorded)."""
    parts = []
    if "python" in env:
        parts.append(f"Python {safe(env['python'])}" + (f" on {safe(env['platform'])}" if "platform" in env else ""))
    elif "platform" in env:
        parts.append(safe(env["platform"]))
    packages = env.get("packages") or {}
    if packages:
        parts.append(", ".join(f"{safe(n)} {safe(v)}" for n, v in sorted(packages.items())))
    return "; ".join(parts)


def change_lines(d: dict[str, Any]) -> list[str]:
    """`saved by: alice@ci -> bob@laptop`, `python: 3.11.8 -> 3.11.9`, `scikit-learn 1.5.2 -> 1.6.0`
    (`numpy (none) -> 2.1.0` when one version did not have it)."""
    lines = []
    who_changed = d.get("saved_by")
    if who_changed:
        lines.append(f"saved by: {safe(who_changed['old'])} -> {safe(who_changed['new'])}")
    for key, change in (d.get("changed") or {}).items():
        lines.append(f"{key}: {safe(change['old'])} -> {safe(change['new'])}")
    for name, change in (d.get("packages") or {}).items():
        old, new = change.get("old") or "(none)", change.get("new") or "(none)"
        lines.append(f"{safe(name)} {safe(old)} -> {safe(new)}")
    return lines
