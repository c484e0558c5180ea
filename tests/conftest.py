"""Shared test helpers: where the golden fixtures live (../shared/fixtures beside the clone)."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    assert FIXTURES.is_dir(), f"golden fixtures not found at {FIXTURES}"
    return FIXTURES
