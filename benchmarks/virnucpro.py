"""VirNucPro itself beside vnp: the original `prediction.py`, the Broad fork's `virnucpro predict` and vnp, on
the same reads, with the same weights, on one GPU (the CPU at the ci scale).

The programs run from clones the user names (`benchmarks/harness/peer_programs.py`: VNP_PEER_ORIGINAL,
VNP_PEER_FORK, VNP_PEER_SITE); all three read one weights kit (`benchmarks/harness/weights_kit.py`: the
published shapes on a GPU, 36 narrow ESM-2 layers on the CPU), so they compute on identical seeded random
weights. vnp is the commit under test, given the kit's files. Each run is validated like every other (records
in = records out, by the harness's own count) and its outputs compared after the clock stops with the
original's (`benchmarks/harness/agreement.py`): the same IDs in the same order, and labels that agree. vnp
must agree: in fp32 every label and scores within 1e-4, in its default precision 99.9% of labels; a vnp that
disagrees fails the agreement benchmarks. The fork's agreement is tracked, not required.

The original takes no options and, at 20,000 reads, minutes: it runs on `typical` alone (and on the CPU, at the
ci scale, so do the others). Every figure is a
cost (bigger is worse): seconds, seconds per million reads or ESM-2 tokens, vnp's time over another
program's, the share of labels or calls that differ, the largest score difference.
"""

from asv_runner.benchmarks.mark import SkipNotImplemented

from benchmarks.harness import agreement, peer_programs
from benchmarks.harness.suite import SCALE, PipelineSuite, outputs, spec, value

# asv parameter -> (program: "" is the commit under test, options beyond the weights kit)
PROGRAMS = {
    "vnp": ("", {}),  # its defaults: bf16 on a GPU (fp32 on the CPU)
    "vnp-fp32": ("", {"precision": "fp32"}),
    "fork": ("fork", {}),  # `virnucpro predict` on one GPU: its v1 path
    "fork-parallel": ("fork", {"parallel": True}),  # v2.0's packed ESM-2 path, without flash-attn: its fallback
    "fork-flash": ("fork", {"parallel": True, "flash_attention": True}),  # ... with flash_attn_compat standing in
    "original": ("original", {}),
}
OTHERS = [name for name, (program, _) in PROGRAMS.items() if program]
ROLES = ["typical", "large"]
ORIGINAL_ROLES = ("typical",)
REFERENCE = "original"
# vnp against the original: (least share of equal labels, largest score difference); None: not required
REQUIRED = {"vnp-fp32": (1.0, 1e-4), "vnp": (0.999, None)}


def program_run(name: str, role: str):
    if name == REFERENCE and role not in ORIGINAL_ROLES:
        raise NotImplementedError(f"the original runs on {', '.join(ORIGINAL_ROLES)} only (it takes hours on {role})")
    if not SCALE.on_gpu and role != "typical":
        raise NotImplementedError(f"on the CPU ({SCALE.name} scale) the programs run on typical only (minutes each)")
    program, options = PROGRAMS[name]
    try:
        kit = peer_programs.kit(SCALE)
    except peer_programs.Missing as missing:
        raise NotImplementedError(str(missing)) from None
    kit_options = {} if program else {"weights_kit": str(kit.root)}  # VirNucPro's programs find the kit themselves
    return spec("virnucpro", role, 1, name, {**kit_options, **options}, program=program)


class ProgramSuite(PipelineSuite):
    """Keeps each run's output files: the agreement benchmarks compare them, whichever class ran a program first."""

    keeps_outputs = True


class VirNucPro(ProgramSuite):
    """What each program costs on the same reads and weights."""

    params = (list(PROGRAMS), ROLES)
    param_names = ("program", "dataset")
    version = "1"

    def setup(self, memo, program, dataset):
        self.metrics = self.run(memo, program_run(program, dataset))

    def track_wall_seconds(self, memo, program, dataset):
        return value(self.metrics, "wall_seconds")

    track_wall_seconds.unit = "s"

    def track_seconds_per_million_reads(self, memo, program, dataset):
        return value(self.metrics, "seconds_per_million_reads")

    track_seconds_per_million_reads.unit = "s/Mread"

    def track_esm2_seconds_per_million_tokens(self, memo, program, dataset):
        """The ESM-2 stage's seconds per million ESM-2 tokens (the harness's count): its speed, as a cost."""
        return value(self.metrics, "esm2_seconds_per_million_tokens")

    track_esm2_seconds_per_million_tokens.unit = "s/Mtoken"

    def track_projected_full_sample_hours(self, memo, program, dataset):
        """A whole 6M-read sample on one GPU by the cost model fitted on this run alone (n/a on the CPU)."""
        if not SCALE.on_gpu:  # (in a track, only SkipNotImplemented is n/a; NotImplementedError is a failure)
            raise SkipNotImplemented(f"the {SCALE.name} scale's CPU runs project no real sample")
        return value(self.metrics, "projected_full_sample_hours")

    track_projected_full_sample_hours.unit = "h"


class VnpAgainst(ProgramSuite):
    """vnp's wall time over another program's on the same reads: below 1, vnp is faster."""

    params = (OTHERS, ROLES)
    param_names = ("other", "dataset")
    version = "1"

    def setup(self, memo, other, dataset):
        self.vnp = self.run(memo, program_run("vnp", dataset))
        self.other = self.run(memo, program_run(other, dataset))

    def track_vnp_over_other_time(self, memo, other, dataset):
        return min(v["wall_seconds"] for v in self.vnp) / min(o["wall_seconds"] for o in self.other)

    track_vnp_over_other_time.unit = "ratio"


class Agreement(ProgramSuite):
    """Each program's outputs against the original's on the same reads (the original runs on typical only)."""

    params = ([name for name in PROGRAMS if name != REFERENCE], ROLES)
    param_names = ("program", "dataset")
    version = "1"

    def setup(self, memo, program, dataset):
        self.run(memo, program_run(REFERENCE, dataset))
        self.run(memo, program_run(program, dataset))
        reference, other = program_run(REFERENCE, dataset), program_run(program, dataset)
        self.agreement = agreement.compare(outputs(memo, reference), outputs(memo, other))
        agreement.save(self.agreement, dataset, REFERENCE, program)
        if program in REQUIRED:
            check(program, self.agreement)

    def track_label_disagreement(self, memo, program, dataset):
        """The share of frames whose label differs from the original's."""
        return 1.0 - self.agreement.labels

    track_label_disagreement.unit = "fraction"

    def track_call_disagreement(self, memo, program, dataset):
        """The share of chunks whose call (prediction_results_highestscore.csv) differs from the original's."""
        return 1.0 - self.agreement.chunks

    track_call_disagreement.unit = "fraction"

    def track_max_score_difference(self, memo, program, dataset):
        return self.agreement.max_score_difference

    track_max_score_difference.unit = "score"


def check(program: str, found: agreement.Agreement) -> None:
    """vnp must give the original's IDs in its order, and its labels (and, in fp32, its scores)."""
    least_labels, most_difference = REQUIRED[program]
    problems = []
    if not (found.same_ids and found.same_order):
        problems.append("frame IDs or their order differ")
    if found.labels < least_labels:
        problems.append(f"{found.labels:.4%} of labels equal (at least {least_labels:.1%} required)")
    if most_difference is not None and found.max_score_difference > most_difference:
        problems.append(f"scores differ by up to {found.max_score_difference:.2g} (at most {most_difference:g})")
    if problems:
        raise RuntimeError(f"{program} disagrees with the original: {'; '.join(problems)}")
