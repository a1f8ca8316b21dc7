"""The CLI reference in docs/ and README's layout are generated from the code; these fail when someone forgot
to regenerate them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_cli_reference_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_readme_layout_is_the_package_as_it_is() -> None:
    """README's "For developers" tree is generated from the folders and the layers contract: a module added,
    moved or removed without regenerating it fails here."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_layout_docs.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_docs_link_to_pages_that_exist() -> None:
    import re

    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+\.md)\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"


def test_every_fsck_code_is_documented() -> None:
    from mstore.ops.problems import CODES

    text = (ROOT / "docs" / "guarantees.md").read_text()
    assert all(f"| `{code}` |" in text for code in CODES)


def test_one_python_requirement_everywhere() -> None:
    """pyproject's requires-python is what README and getting-started tell a newcomer, word for word."""
    import re

    minimum = re.search(r'requires-python = ">=(3\.\d+)"', (ROOT / "pyproject.toml").read_text())
    assert minimum is not None
    statement = f"Python {minimum[1]} or newer (CI runs 3.11)"
    for page in (ROOT / "README.md", ROOT / "docs" / "getting-started.md"):
        text = " ".join(page.read_text().split())
        assert statement in text, f"{page.name} does not say {statement!r}"
        for claim in re.findall(r"(?:on a machine with|install|requires?) \(?python (3\.\d+)", text, re.IGNORECASE):
            assert claim == minimum[1], f"{page.name} asks for Python {claim}, pyproject for {minimum[1]}"
