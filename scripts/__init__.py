"""Entry points, run from the repository root as `python -m scripts.NAME` (see docs/architecture.md)."""
