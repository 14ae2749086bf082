"""The unit of work each stage's time grows with: a fact about the run record's stages, shared by the harness's
per-run projection (`metrics.projected_hours`) and the analysis's cost model (`analysis/costmodel.py`)."""

from __future__ import annotations

# (substring of the lower-cased stage name, work unit, runs once per GPU worker). The first rule that
# matches wins; the names cover vnp's stages (docs/run-record.md) and the fork's pipeline_state.json ones.
STAGE_RULES = (
    ("esm", "esm_tokens", True),
    ("dnabert", "dnabert_tokens", True),
    ("classif", "frames", True),
    ("consensus", "chunks_with_frame", False),
    ("preprocess", "bases", False),
    ("chunk", "bases", False),
    ("translat", "bases", False),
)


def stage_work(name: str) -> tuple[str, bool]:
    """The work unit of a stage and whether it runs in the per-GPU workers; any other stage: frames, on the CPU."""
    lowered = name.lower()
    for needle, unit, parallel in STAGE_RULES:
        if needle in lowered:
            return unit, parallel
    return "frames", False
