"""The vendored fixtures (tests/fixtures/) are byte-identical to the master copy beside the clone."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import FIXTURES, SHARED_FIXTURES

VENDORED = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())


def digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_every_master_fixture_but_the_taehv_one_is_vendored() -> None:
    assert len(VENDORED) == 8 and all((FIXTURES / n / "config.json").is_file() for n in VENDORED)
    if SHARED_FIXTURES.is_dir():
        master = {p.name for p in SHARED_FIXTURES.iterdir() if p.is_dir()} - {"decoders"}
        assert set(VENDORED) == master


@pytest.mark.parametrize("name", VENDORED)
def test_vendored_fixture_equals_the_master_copy(name: str) -> None:
    if not (SHARED_FIXTURES / name).is_dir():
        pytest.skip(f"no master copy at {SHARED_FIXTURES} to compare with (a clone on its own)")
    assert digest(FIXTURES / name) == digest(SHARED_FIXTURES / name)
