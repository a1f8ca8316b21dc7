"""Who is acting: the name recorded with a save and with every tag move.

`$MSTORE_USER` wins (CI jobs and shared service accounts set it); otherwise `user@host`, as git's
reflog would show it. It is a label for people reading history, not an authentication: signatures
(when a store uses them) are what a consumer can rely on.
"""

from __future__ import annotations

import getpass
import os
import socket

_MAX_CHARS = 200


def who() -> str:
    """The actor's name: `$MSTORE_USER`, else `user@host` (one line, bounded)."""
    name = os.environ.get("MSTORE_USER", "").strip()
    if not name:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (some containers) and no $USER
            user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
        name = f"{user}@{socket.gethostname() or 'localhost'}"
    return " ".join(name.split())[:_MAX_CHARS]
