"""Shared test fixtures. Test data lives in tests/data so a fresh clone tests without ../shared."""

import os
from pathlib import Path

import pytest
import torch

# Without a GPU the fused kernels' tests run in Triton's interpreter. Triton decides interpreter or compiler when a
# kernel is defined (its module imported), so the whole session says so before any test can import one: a module
# first imported by another test without it would hold compiled-mode kernels that cannot run on the CPU.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"


@pytest.fixture
def golden_dir() -> Path:
    return GOLDEN
