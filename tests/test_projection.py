"""The cost model's fitting and projection math, on synthetic runs generated from a known cost model."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from synthetic_runs import (
    STARTUP_SECONDS,
    TRUTH,
    composition,
    from_pairs,
    observations,
    synthetic_record,
    true_seconds,
    true_total,
)

from analysis import costmodel as C
from analysis import projection as P
from analysis.history import history_section
from analysis.record import RUN_SCHEMA, SCHEMA, STARTUP, WORK_UNITS, Record, gpu_index, load_records

# --- fitting ------------------------------------------------------------------------------------------


def test_two_sizes_one_gpu_count_recovers_fixed_and_marginal_exactly():
    model = C.fit_cost_model(observations([("typical", 1000, 1), ("large", 10000, 1)]))
    for stage, (fixed, rate, _) in TRUTH.items():
        fit = model.stages[stage]
        assert fit.fixed == pytest.approx(fixed, rel=1e-6, abs=1e-9)
        assert fit.marginal_at(1) == pytest.approx(rate, rel=1e-6)
    assert model.stages[STARTUP].fixed == pytest.approx(STARTUP_SECONDS)


def test_two_gpu_counts_fit_amdahl_and_extrapolate_exactly():
    obs = observations([("typical", 1000, 1), ("large", 10000, 1), ("typical", 1000, 2), ("large", 10000, 2)])
    model = C.fit_cost_model(obs)
    full = composition(6_000_000)
    for gpus in (1, 2, 4, 8):
        assert model.total_seconds(full, gpus) == pytest.approx(true_total(full, gpus), rel=1e-6)
    esm = model.stages["esm2"]
    assert esm.as_dict()["amdahl"]["parallel_fraction"] == pytest.approx(TRUTH["esm2"][2], rel=1e-6)
    assert [model.extrapolated(g) for g in (1, 2, 4, 8)] == [False, False, True, True]


def test_single_gpu_count_assumes_ideal_scaling_and_says_so():
    model = C.fit_cost_model(observations([("typical", 1000, 1), ("large", 10000, 1)]))
    esm = model.stages["esm2"]
    assert esm.marginal_at(4) == pytest.approx(esm.marginal_at(1) / 4)
    assert model.stages["preprocess"].marginal_at(4) == model.stages["preprocess"].marginal_at(1)
    assert model.extrapolated(4) and not model.extrapolated(1)
    assert any("ideal scaling assumed" in flag for flag in esm.flags)


def test_one_dataset_falls_back_to_proportional_and_flags_it():
    comp = composition(1000)
    model = C.fit_cost_model(observations([("typical", 1000, 1, 0), ("typical", 1000, 1, 1)]))
    esm = model.stages["esm2"]
    assert esm.fixed == 0
    assert esm.marginal_at(1) == pytest.approx(true_seconds("esm2", comp, 1) / comp["esm_tokens"])
    assert any("proportional" in flag for flag in esm.flags)
    # start-up is outside every stage: fixed by construction, never scaled with the work
    assert model.stages[STARTUP].fixed == pytest.approx(STARTUP_SECONDS)
    assert model.stages[STARTUP].marginal_at(1) == 0


def test_stage_with_zero_work_is_fixed_cost_only():
    # no chunk has a frame: consensus does no work in any run, but still costs its fixed part
    def no_calls(reads):
        return {**composition(reads), "chunks_with_frame": 0.0}

    obs = observations([("typical", 1000, 1)], comp=no_calls(1000)) + observations(
        [("large", 10000, 1)], comp=no_calls(10000)
    )
    fit = C.fit_cost_model(obs).stages["consensus"]
    assert fit.fixed == pytest.approx(TRUTH["consensus"][0])
    assert fit.seconds(0.0, 1) == pytest.approx(TRUTH["consensus"][0])
    assert any("no work measured" in flag for flag in fit.flags)


def test_zero_work_on_one_gpu_count_leaves_that_rate_to_amdahl():
    # (0 work, 2 GPUs) informs only the fixed part; 2 GPUs is then extrapolated, never divided by zero
    fit = C.fit_stage("esm2", [(0.0, 2, 2.0), (1e4, 1, 3.0), (1e5, 1, 12.0)])
    assert fit.fixed == pytest.approx(2.0)
    assert fit.marginal == {1: pytest.approx(1e-4)}
    assert fit.extrapolated(2) and fit.marginal_at(2) == pytest.approx(0.5e-4)


def test_negative_fits_are_clamped_to_zero():
    # times that shrink with more work would fit a negative rate; costs are never negative
    fit = C.fit_stage("write", [(100.0, 1, 2.0), (1000.0, 1, 1.0)])
    assert fit.marginal_at(1) == 0 and fit.fixed == pytest.approx(1.5)
    assert any("negative" in flag for flag in fit.flags)


def test_amdahl_never_gives_negative_rates_for_superlinear_measurements():
    fit = C.fit_stage("esm2", [(1e4, 1, 1.0), (1e5, 1, 10.0), (1e4, 2, 0.4), (1e5, 2, 4.0)])
    assert fit.serial == 0
    assert fit.marginal_at(8) > 0


def test_interval_comes_from_the_fastest_and_slowest_repeats():
    specs = [
        (name, reads, 1, r, f)
        for name, reads in (("typical", 1000), ("large", 10000))
        for r, f in enumerate((0.9, 1.0, 1.1))
    ]
    full = composition(6_000_000)
    result = C.project(C.fit_envelope(observations(specs)), full, (1,), 10.0)
    row = result["rows"][0]
    truth = true_total(full, 1) / 3600
    assert row["total_hours"] == pytest.approx(truth, rel=1e-6)
    assert row["low_hours"] == pytest.approx(0.9 * truth, rel=1e-6)
    assert row["high_hours"] == pytest.approx(1.1 * truth, rel=1e-6)


# --- projection ---------------------------------------------------------------------------------------


def test_projection_rows_pass_fail_fewest_gpus_and_max_reads():
    obs = observations([("typical", 1000, 1), ("large", 10000, 1), ("typical", 1000, 2), ("large", 10000, 2)])
    full = composition(6_000_000)
    hours = {g: true_total(full, g) / 3600 for g in C.GPU_COUNTS}
    target = (hours[2] + hours[4]) / 2  # between the 2- and 4-GPU projections: 4 is the fewest that meet it
    result = C.project(C.fit_envelope(obs), full, C.GPU_COUNTS, target)
    rows = {row["gpus"]: row for row in result["rows"]}
    assert [rows[g]["meets_target"] for g in C.GPU_COUNTS] == [False, False, True, True]
    assert result["fewest_gpus_meeting_target"] == 4 and result["fewest_gpus_extrapolated"] is True
    assert rows[2]["scaling_efficiency"] == pytest.approx(hours[1] / (2 * hours[2]), rel=1e-6)
    for gpus, row in rows.items():
        assert row["total_hours"] == pytest.approx(hours[gpus], rel=1e-6)
        assert sum(s["hours"] for s in row["stages"].values()) == pytest.approx(row["total_hours"])
        # the largest sample that fits takes exactly the target time
        reads = row["max_reads_within_target"]
        assert true_total(composition(reads), gpus) / 3600 == pytest.approx(target, rel=1e-5)


def test_max_reads_is_zero_when_fixed_costs_exceed_the_target():
    model = C.fit_cost_model(observations([("typical", 1000, 1), ("large", 10000, 1)]))
    assert C.max_reads_within(model, composition(1000), 1, seconds=1.0) == 0


def test_nonnegative_fit_is_the_exact_optimum():
    """Dropping the most negative coefficient and refitting can stop short of the best non-negative fit."""
    rows = [[3.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [1.0, 2.0, 0.0]]
    y = np.array([2.0, 5.0, 5.0, 1.0])
    coef, clamped = C._nonnegative_lstsq([np.array(column) for column in zip(*rows, strict=True)], y)
    assert coef == pytest.approx([1.0, 0.0, 0.1], abs=1e-9)
    assert clamped == [1]  # held at 0 where an unconstrained fit goes negative


def test_a_cohort_runs_its_samples_node_by_node():
    """10 full samples on up to 4 nodes of 2 GPUs: 10, 5 then 3 samples per node, each a whole sample time."""
    envelope = C.fit_envelope(observations([("typical", 1000, 1), ("large", 10000, 1), ("large", 10000, 2)]))
    full = composition(6_000_000)
    cohort = C.project_cohort(envelope, full, samples=10, gpus_per_node=2, nodes=4)
    sample_hours = true_total(full, 2) / 3600
    assert cohort["projected"] and not cohort["extrapolated"]
    assert [(r["nodes"], r["gpus"], r["samples_per_node"]) for r in cohort["rows"]] == [
        (1, 2, 10),
        (2, 4, 5),
        (4, 8, 3),
    ]
    assert cohort["rows"][-1]["hours"] == pytest.approx(3 * sample_hours, rel=1e-6)
    assert all(r["node_hours"] == pytest.approx(10 * sample_hours, rel=1e-6) for r in cohort["rows"])
    assert C.node_counts(6) == [1, 2, 4, 6] and C.node_counts(1) == [1]
    with pytest.raises(ValueError):
        C.project_cohort(envelope, full, samples=0, gpus_per_node=2, nodes=4)


# --- the trust check ----------------------------------------------------------------------------------


def test_typical_to_large_check_reports_the_proportional_models_error():
    obs = observations([("typical", 1000, 1), ("large", 10000, 1)])
    check = P.check_prediction(obs)
    small, large = composition(1000), composition(10000)
    # fitted on typical alone: stages proportional to work, start-up fixed
    predicted = STARTUP_SECONDS + sum(
        true_seconds(s, small, 1) * large[C.stage_kind(s)[0]] / small[C.stage_kind(s)[0]] for s in TRUTH
    )
    measured = true_total(large, 1)
    assert check["available"]
    assert check["per_gpus"][0]["error"] == pytest.approx(predicted / measured - 1, rel=1e-6)
    assert check["warning"] == (abs(predicted / measured - 1) > 0.10)


def test_check_is_exact_without_fixed_stage_costs_and_warns_when_far_off():
    no_fixed = {stage: (0.0, rate, p) for stage, (_, rate, p) in TRUTH.items()}
    exact = P.check_prediction(observations([("typical", 1000, 1), ("large", 10000, 1)], truth=no_fixed))
    # (timestamps near 1.7e9 s carry ~1e-7 s of rounding into the stage times)
    assert exact["max_abs_error"] == pytest.approx(0, abs=1e-6) and not exact["warning"]
    big_fixed = {stage: (50.0, rate, p) for stage, (_, rate, p) in TRUTH.items()}
    far = P.check_prediction(observations([("typical", 1000, 1), ("large", 10000, 1)], truth=big_fixed))
    assert far["warning"] and far["max_abs_error"] > 0.10


def test_check_predicts_gpu_counts_the_source_never_ran_and_flags_them():
    # typical at 1 and 2 GPUs (Amdahl fitted exactly), large only at 4: a test of the extrapolation itself
    obs = observations(
        [("typical", 1000, 1), ("typical", 10000, 1), ("typical", 1000, 2), ("typical", 10000, 2), ("large", 50000, 4)]
    )
    check = P.check_prediction(obs)
    assert check["available"] and [r["gpus"] for r in check["per_gpus"]] == [4]
    row = check["per_gpus"][0]
    assert row["extrapolated"] and row["error"] == pytest.approx(0, abs=1e-6)
    slow = observations(
        [
            ("typical", 1000, 1),
            ("typical", 10000, 1),
            ("typical", 1000, 2),
            ("typical", 10000, 2),
            ("large", 50000, 4, 0, 1.5),
        ]
    )  # the 4-GPU run 1.5x slower than Amdahl says
    assert P.check_prediction(slow)["warning"]


def test_runs_of_the_projected_sample_are_set_against_every_groups_projection():
    fitted = observations([("typical", 1000, 1), ("large", 10000, 1)])
    sample = composition(200_000)
    later, _ = from_pairs([("s", synthetic_record("full", 200_000, 4, factor=1.2, commit="fedcba9876543210"))])
    groups = P.project_results(fitted + later, sample, "test", (1, 4))
    by_commit = {g["commit"]: g for g in groups}
    rows = by_commit["abcdef12"]["measured_sample"]
    assert len(rows) == 1 and rows[0]["commit"] == "fedcba98" and not rows[0]["in_fit"] and rows[0]["extrapolated"]
    # ideal scaling assumed from the 1-GPU fit; the run took 1.2x its true time
    model = C.fit_cost_model(fitted)
    assert rows[0]["projected_seconds"] == pytest.approx(model.total_seconds(sample, 4), rel=1e-9)
    assert rows[0]["measured_seconds"] == pytest.approx(later[0].wall_seconds)
    own = by_commit["fedcba98"]["measured_sample"]
    assert own[0]["in_fit"]
    other_sample = P.project_results(fitted + later, composition(300_000), "test", (1, 4))
    assert all(not g["measured_sample"] for g in other_sample)
    only_fitted = P.project_results(fitted, sample, "test", (1, 4), sample_pool=fitted + later)
    assert [r["commit"] for r in only_fitted[0]["measured_sample"]] == ["fedcba98"]


def test_default_check_predicts_the_largest_reads_role_from_the_next_smaller():
    assert P.default_check(observations([("typical", 1000, 1), ("large", 10000, 1)])) == ("typical", "large")
    assert P.default_check(observations([("large", 10000, 1), ("subset1m", 100000, 1), ("full", 600000, 4)])) == (
        "subset1m",
        "full",
    )
    assert P.default_check(observations([("subset1m", 100000, 4)])) == ("typical", "large")  # says "no typical runs"


def test_check_without_large_runs_says_why():
    check = P.check_prediction(observations([("typical", 1000, 1)]))
    assert not check["available"] and "large" in check["reason"]


# --- reading results ----------------------------------------------------------------------------------


def test_unusable_records_are_left_out_with_a_reason():
    failed = synthetic_record()
    failed["harness"]["exit_code"] = 1
    unvalidated = synthetic_record()
    unvalidated["harness"]["validated"] = False
    resumed = synthetic_record()
    resumed["harness"]["resumed"] = True
    obs, skipped = from_pairs([("a", failed), ("b", unvalidated), ("c", resumed)])
    assert obs == [] and len(skipped) == 3
    assert "resumed" in skipped[2]


def test_cli_target_record_takes_its_composition_from_the_harness():
    record = synthetic_record()
    record["run"]["input"] = None
    assert "composition" in Record.from_json(record).problem
    record["harness"]["expected"] = composition(1000)
    obs = Record.from_json(record)
    assert obs.usable and obs.composition["esm_tokens"] == composition(1000)["esm_tokens"]
    assert obs.stage_seconds[STARTUP] == pytest.approx(STARTUP_SECONDS)


def test_check_matches_roles_so_ci_stand_in_datasets_count():
    records = []
    for dataset, role, reads in (("tiny", "typical", 1000), ("small", "large", 10000)):
        record = synthetic_record(dataset, reads)
        record["harness"]["role"] = role
        records.append((dataset, record))
    obs, _ = from_pairs(records)
    check = P.check_prediction(obs)
    assert check["available"] and check["per_gpus"][0]["measured_seconds"] == pytest.approx(
        true_total(composition(10000), 1)
    )


def at_chunk_size(record, chunk_size, role=None):
    """A synthetic RunRecord as if chunked at ``chunk_size`` (the harness's model_type)."""
    harness = {**record["harness"], "model_type": chunk_size, "role": role or record["harness"]["dataset"]}
    return {**record, "harness": harness}


def test_runs_at_another_chunk_size_are_never_projected_with_the_samples():
    """Contigs at 500 cost 5x the reads' rates here: mixed into a projection at 300, they would show."""
    reads = observations([("typical", 1000, 1), ("large", 10000, 1)])
    (contig,), _ = from_pairs([("c", at_chunk_size(synthetic_record("contigs", 500, 1, factor=5.0), 500))])
    (unknown,), _ = from_pairs([("u", synthetic_record("other", 3000, 1, factor=5.0))])
    unknown = dataclasses.replace(unknown, chunk_size=None)
    full = composition(6_000_000)
    by_default = P.project_results(reads + [contig, unknown], full, "test", (1,))  # most runs: 300
    only_300 = P.project_results(reads + [contig, unknown], full, "test", (1,), chunk_size=300)
    for groups in (by_default, only_300):
        assert [(g["chunk_size"], g["fit"]["datasets"]) for g in groups] == [(300, ["large", "typical"])]
        assert groups[0]["projection"]["rows"][0]["total_hours"] == pytest.approx(true_total(full, 1) / 3600, rel=1e-6)
    only_500 = P.project_results(reads + [contig, unknown], full, "test", (1,), chunk_size=500)
    assert [(g["chunk_size"], g["fit"]["datasets"]) for g in only_500] == [(500, ["contigs"])]
    assert P.project_results([contig], full, "test", (1,), chunk_size=300) == []


def write_records(root, records):
    for n, record in enumerate(records):
        folder = root / record["harness"]["machine"] / record["harness"]["commit"][:8]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"run-{n}.json").write_text(json.dumps(record))
    return root


def test_the_projection_says_which_runs_it_left_out_for_their_chunk_size(tmp_path):
    reads = [at_chunk_size(synthetic_record(role, n, 1), 300) for role, n in (("typical", 1000), ("large", 10**4))]
    contigs = [at_chunk_size(synthetic_record("contigs", 500, 1, factor=5.0, repeat=r), 500) for r in (0, 1)]
    root = write_records(tmp_path / "records", reads + contigs)
    sample = composition(6_000_000)
    document = P.projection_document(P.Query(records=root, composition=sample, source="test", gpu_counts=(1,)))
    assert document["chunk_size"] == 300 and [g["chunk_size"] for g in document["groups"]] == [300]
    assert document["groups"][0]["roles_at_other_chunk_sizes"] == ["contigs"]  # for the history's asv values
    assert document["skipped"] == ["m1/abcdef12 (gpu scale, contigs): 2 run(s) at chunk size 500, "
                                   "not projected onto a sample chunked at 300"]
    only_contigs = write_records(tmp_path / "contigs", contigs)
    with pytest.raises(ValueError, match="at chunk size 300 \\(runs at chunk size 500 only"):
        P.projection_document(P.Query(records=only_contigs, composition=sample, chunk_size=300))


def test_history_shows_no_tracked_projection_of_a_role_at_another_chunk_size():
    group = {"commit": "abcdef12", "date": 1, "started_at": 1.0, "roles_at_other_chunk_sizes": ["contigs"],
             "projection": {"rows": [{"gpus": 1, "total_hours": 1.0, "low_hours": 1.0, "high_hours": 1.0}],
                            "fewest_gpus_meeting_target": 1}}
    tracked = {"end_to_end.EndToEnd.track_projected_full_sample_hours('typical', 1)": 1.0,
               "end_to_end.EndToEnd.track_projected_full_sample_hours('contigs', 1)": 3.0,
               "end_to_end.EndToEnd.track_projected_hours(1)": 1.1}
    asv = {"m1": {"abcdef12": {"date": 1, "values": tracked}}}
    (row,) = history_section([group], asv, "m1", 1)["rows"]
    assert row["asv_tracked"] == {"end_to_end.EndToEnd.track_projected_full_sample_hours('typical', 1)": 1.0,
                                  "end_to_end.EndToEnd.track_projected_hours(1)": 1.1}


def test_stage_kinds_cover_vnp_and_fork_names():
    assert C.stage_kind("esm2") == ("esm_tokens", True)
    assert C.stage_kind("ESM-2 Feature Extraction") == ("esm_tokens", True)
    assert C.stage_kind("DNABERT-S Feature Extraction") == ("dnabert_tokens", True)
    assert C.stage_kind("consensus") == ("chunks_with_frame", False)
    assert C.stage_kind("Sequence Chunking") == ("bases", False)
    assert C.stage_kind("write") == ("frames", False)


def test_load_records_reads_the_tree_and_fills_key_from_path(tmp_path):
    folder = tmp_path / "records" / "h200" / "abcdef12"
    folder.mkdir(parents=True)
    record = synthetic_record()
    del record["harness"]["machine"]
    (folder / "end_to_end-typical-1gpu-all-r0.json").write_text(json.dumps(record))
    (folder / "broken.json").write_text("{not json")
    records, skipped = load_records(tmp_path / "records")
    assert len(records) == 1 and records[0].machine == "h200" and records[0].commit == "abcdef12"
    assert len(skipped) == 1 and "unreadable" in skipped[0]


def test_datasets_file_is_read_defensively(tmp_path):
    path = tmp_path / "datasets.json"
    path.write_text(
        json.dumps(
            {
                "datasets": {
                    "full": {"reads": 6000000, "model_type": 300, "composition": {"frames": 4.8e6}},
                    "odd": "not a dict",
                }
            }
        )
    )
    assert P.read_datasets(path) == {"full": {"composition": {"reads": 6e6, "frames": 4.8e6}, "chunk_size": 300}}
    path.write_text("[1, 2]")
    assert P.read_datasets(path) == {}
    assert P.read_datasets(tmp_path / "missing.json") == {}


def test_missing_units_are_estimated_from_measured_ratios():
    filled, estimated = P.complete_composition({"reads": 2000.0, "frames": 1600.0}, [composition(1000)])
    assert sorted(estimated) == sorted(set(WORK_UNITS) - {"reads", "frames"})
    assert filled["esm_tokens"] == pytest.approx(composition(2000)["esm_tokens"])
    assert filled["frames"] == 1600.0
    with pytest.raises(ValueError):
        P.complete_composition({"frames": 10.0}, [])


def test_composition_file_accepts_bare_nested_and_run_json(tmp_path):
    for document in (
        composition(10),
        {"composition": composition(10)},
        {"schema": "vnp-run/1", "input": composition(10)},
    ):
        path = tmp_path / "c.json"
        path.write_text(json.dumps(document))
        assert P.read_composition_file(path)["reads"] == 10
    path.write_text(json.dumps({"nothing": 1}))
    with pytest.raises(ValueError):
        P.read_composition_file(path)


def run_record_example() -> dict:
    """The run.json example of docs/run-record.md (the contract), its // comments stripped."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "run-record.md").read_text()
    block = text.split("```jsonc", 1)[1].split("```", 1)[0]
    return json.loads(re.sub(r"//[^\n]*", "", block))


def test_the_work_a_run_did_is_the_harness_count_not_the_pipelines_claim():
    """A build that over-reports its tokens must not look faster per token; DNABERT tokens, which the harness
    only estimates, come from the run."""
    run = run_record_example()
    expected = {**run["input"], "esm_tokens": run["input"]["esm_tokens"] // 2, "dnabert_tokens": 1,
                "dnabert_tokens_estimated": True}
    document = {"schema": SCHEMA, "run": run,
                "harness": {"machine": "h200", "commit": "0123456789abcdef", "dataset": "typical", "gpus": 1,
                            "exit_code": 0, "validated": True, "expected": expected}}
    composition = Record.from_json(document).composition
    assert composition["esm_tokens"] == run["input"]["esm_tokens"] // 2
    assert composition["dnabert_tokens"] == run["input"]["dnabert_tokens"]


def test_record_reads_the_documented_run_json():
    """Every field the Record takes from run.json is read from the documented example, not from a guess."""
    run = run_record_example()
    assert run["schema"] == RUN_SCHEMA and set(run["input"]) == set(WORK_UNITS)
    document = {
        "schema": SCHEMA,
        "harness": {
            "machine": "h200",
            "commit": "0123456789abcdef",
            "dataset": "typical",
            "gpus": 1,
            "exit_code": 0,
            "validated": True,
        },
        "run": run,
    }
    record = Record.from_json(document)
    assert record.usable and record.commit == "01234567" and record.chunk_size == run["config"]["chunk_size"]
    assert record.wall_seconds == run["wall_seconds"] and record.composition == run["input"]
    assert record.stage_seconds == {"preprocess": 2.5, "esm2": 41.2, STARTUP: pytest.approx(50.0 - 2.5 - 41.2)}
    assert [(d.stage, d.gpu, d.info["intervals"]) for d in record.devices] == [
        ("esm2", 0, [[1764340003.0, 1764340044.2]])
    ]
    with pytest.raises(ValueError, match="vnp-runrecord/1"):
        Record.from_json(run)  # a run.json alone is not a RunRecord


def test_device_strings_are_parsed_in_one_place():
    assert [gpu_index(d) for d in ("cuda:3", "cuda", "cpu", None)] == [3, 0, None, None]


def test_a_commit_is_dated_by_git_when_asv_has_no_date(tmp_path, monkeypatch):
    """A/B runs measure an older commit after a newer one: the newer commit stays the newest group."""
    import subprocess

    from analysis.history import git_commit_date

    repo = tmp_path / "repo"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "GIT_COMMITTER_DATE": "@1700000000 +0000", "PATH": __import__("os").environ["PATH"]}
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "x"], check=True, env=env)
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert git_commit_date(sha[:8], repo) == git_commit_date(sha, repo) == 1_700_000_000_000
    assert git_commit_date("deadbeef", repo) is None and git_commit_date(sha, tmp_path / "nowhere") is None

    old, new = "a1" * 8, "b2" * 8
    records = [synthetic_record(role, n, 1, commit=commit, start=start)
               for commit, start in ((new, 1000.0), (old, 9000.0))  # the older commit measured last
               for role, n in (("typical", 1000), ("large", 10**4))]
    root = write_records(tmp_path / "records", records)
    monkeypatch.setattr(P, "git_commit_date", lambda commit: {"a1": 1_000, "b2": 2_000}[commit[:2]])
    document = P.projection_document(P.Query(records=root, composition=composition(6_000_000), gpu_counts=(1,)))
    assert [(g["commit"][:2], g["date"]) for g in document["groups"]] == [("a1", 1_000), ("b2", 2_000)]
