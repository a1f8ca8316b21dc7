"""`mstore ui`: a read-only local web app over one store (Starlette + Jinja2, charts by uPlot shipped in
`static/`). Its third-party packages come with the `ui` extra; `missing()` names any that are absent."""

from __future__ import annotations

from importlib.util import find_spec

UI_PACKAGES = ("starlette", "uvicorn", "jinja2")


def missing() -> list[str]:
    """The `ui` extra's packages that cannot be imported here."""
    return [name for name in UI_PACKAGES if find_spec(name) is None]
