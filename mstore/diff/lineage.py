"""What trained a model: the training file's content hash and the code's git commit, recorded at save time.

A metadata `training_file` is only a name; the same name can hold other data next week. When the file
exists at save time its blake3 and size are recorded, so `diff` can say "trained on the same data". When
the save runs inside a git work tree, the commit and whether tracked files had uncommitted changes are
recorded, so `diff` can say "code changed: 1a2b3c4 -> 4d5e6f7". Both are best effort: a missing file, a
directory, no git, a slow or broken repository only leave the field out; they never fail a save.

Stored in the version's `mstore.lineage` block (mstore-owned, so no user key is ever overwritten):
{"training_file": {"path", "blake3", "size"}, "git": {"commit", "dirty"}}.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import blake3

from ..humanize import safe

GIT_TIMEOUT_SECONDS = 3.0
READ_BYTES = 1 << 20


def collect(user: Mapping[str, Any], cwd: Path | None = None) -> dict[str, Any]:
    """The lineage of a save whose user metadata is `user`, run in `cwd` (default: the current directory)."""
    out: dict[str, Any] = {}
    training = user.get("training_file")
    if isinstance(training, str) and training:
        data = file_identity(Path(cwd or ".") / training)
        if data is not None:
            out["training_file"] = {"path": training, **data}
    git = git_state(cwd or Path.cwd())
    if git is not None:
        out["git"] = git
    return out


def file_identity(path: Path) -> dict[str, Any] | None:
    """{"blake3", "size"} of a regular file, or None when it is missing, not a file, unreadable or changed
    while it was read (a hash of bytes that are gone would claim the wrong data)."""
    try:  # O_NONBLOCK: a FIFO named as the training file must not hang the save
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            before = os.fstat(f.fileno())
            if not stat.S_ISREG(before.st_mode):
                return None
            os.set_blocking(fd, True)
            digest = blake3.blake3(max_threads=blake3.blake3.AUTO)
            size = 0
            while block := f.read(READ_BYTES):
                digest.update(block)
                size += len(block)
        after = os.stat(path)
    except OSError:
        return None
    if (before.st_size, before.st_mtime_ns, before.st_ino) != (after.st_size, after.st_mtime_ns, after.st_ino):
        return None
    if size != before.st_size:
        return None
    return {"blake3": digest.hexdigest(), "size": size}


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},  # never take the index lock
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(cwd: Path) -> dict[str, Any] | None:
    """{"commit": sha, "dirty": bool} of the git work tree around `cwd`, or None outside one (or without git).

    Dirty means tracked files differ from the commit (untracked files, such as a store or a model written
    next to the code, do not count)."""
    commit = _git(cwd, "rev-parse", "--verify", "-q", "HEAD")
    if commit is None or not commit.strip():
        return None
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    if status is None:
        return None
    return {"commit": commit.strip(), "dirty": bool(status.strip())}


# -- in words -------------------------------------------------------------------------------------


def code_text(git: Any) -> str:
    """`1a2b3c4`, or `1a2b3c4-dirty` when tracked files had uncommitted changes (as `git describe --dirty`)."""
    if not isinstance(git, dict):
        return "unknown"
    return safe(str(git.get("commit", ""))[:7]) + ("-dirty" if git.get("dirty") else "")


def data_text(training: Any) -> str:
    if not isinstance(training, dict):
        return "unknown"
    return f"{safe(training.get('path', ''))} ({str(training.get('blake3', ''))[:12]})"


def change_lines(lineage: dict[str, Any]) -> list[str]:
    """What `compare.diff_lineage` found, in words (the CLI's diff and the web page share them):
    `trained on the same data: ...` / `training data changed: ... -> ...`, and the same for the code."""
    lines = []
    data = lineage.get("training_file") or {}
    if data.get("old") is not None or data.get("new") is not None:
        if data.get("same") is True:
            lines.append(f"trained on the same data: {data_text(data['new'])}")
        else:
            verb = "training data changed" if data.get("same") is False else "training data"
            lines.append(f"{verb}: {data_text(data.get('old'))} -> {data_text(data.get('new'))}")
    code = lineage.get("git") or {}
    old: Any = code.get("old")
    new: Any = code.get("new")
    if old is not None or new is not None:
        if code.get("same") is True:
            dirty = [w for w, g in (("older", old), ("newer", new)) if g.get("dirty")]
            where = " (uncommitted changes in the " + " and the ".join(dirty) + ")" if dirty else ""
            lines.append(f"same code: commit {code_text({'commit': new.get('commit')})}{where}")
        else:
            verb = "code changed" if code.get("same") is False else "code"
            lines.append(f"{verb}: {code_text(old)} -> {code_text(new)}")
    return lines
