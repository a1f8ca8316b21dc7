"""Version IDs: `YYYYMMDD_HHMMSS[_NNN]`, the UTC time a version was saved (checked before any use)."""

from __future__ import annotations

import re
from datetime import datetime

VERSION_ID_RE = re.compile(r"[0-9]{8}_[0-9]{6}(_[0-9]{3})?")


def is_version_id(text: object) -> bool:
    """`YYYYMMDD_HHMMSS[_NNN]` naming a real UTC time (a crafted `99999999_999999` is no version)."""
    if not isinstance(text, str) or not VERSION_ID_RE.fullmatch(text):
        return False
    try:
        datetime.strptime(text[:15], "%Y%m%d_%H%M%S")
    except ValueError:
        return False
    return True
