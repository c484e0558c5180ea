"""Shared test helpers: where the golden fixtures live.

The fixtures are part of the repository (tests/fixtures/, see its README), so the suite runs from a
fresh clone with nothing beside it. `SHARED_FIXTURES` is the team's master copy beside the clone
(../shared/fixtures) when it exists; tests/test_fixture_copy.py keeps the two byte-identical.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
