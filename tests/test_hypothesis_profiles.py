"""HYPOTHESIS_PROFILE=thorough must make every property test heavier: a test's own literal `max_examples`
would silently override the profile, so explicit settings go through `helpers.examples(n)`."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import settings

from helpers import examples

TESTS = Path(__file__).parent


def test_no_test_pins_its_example_count() -> None:
    pinned = [
        f"{path.name}:{n}"
        for path in sorted(TESTS.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"max_examples\s*=\s*\d+\s*[,)]", line) and path.name != "conftest.py"
    ]
    assert pinned == [], "use max_examples=examples(N) so the thorough profile scales it"


def test_examples_scale_with_the_loaded_profile() -> None:
    scale = settings.default.max_examples / 100
    assert examples(40) == max(40, int(40 * scale))
