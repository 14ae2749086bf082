"""Shared test fixtures. Test data lives in tests/data so a fresh clone tests without ../shared."""

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"


@pytest.fixture
def golden_dir() -> Path:
    return GOLDEN
