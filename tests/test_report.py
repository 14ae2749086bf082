"""The project and report entry points on synthetic results trees built in a tmp dir."""

import importlib
import json
from pathlib import Path

import pytest
from synthetic_runs import GIB, T0, TRUTH, composition, synthetic_record, true_total

from analysis import fmt as R

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
COMMITS = {"cccc2222dddd3333": 1_700_000_000_000, "aaaa1111bbbb2222": 1_710_000_000_000}  # newer date, older name
SLOWDOWN = {"cccc2222dddd3333": 1.0, "aaaa1111bbbb2222": 1.2}  # the newer commit regressed by 20%
VARIANT_FACTORS = {"baseline": 3.0, "sdpa": 2.5, "bf16": 1.5, "packing": 2.0, "persistent": 2.8, "all": 1.0}
PEAK_PER_TOKEN = {"baseline": 4000, "sdpa": 3000, "bf16": 2000, "packing": 4000, "persistent": 4000, "all": 1000}
STATIC = 8 * GIB
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_script(name):
    return importlib.import_module(f"scripts.{name}")


def write_json(path, document):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


def build_tree(root, samples=True, scale="gpu"):
    """Records for two commits (typical + large on 1 and 2 GPUs, two repeats, six variants) and asv results."""
    gib_bytes = STATIC if samples else 0
    for n, (commit, date) in enumerate(COMMITS.items()):
        folder = root / "records" / "m1" / commit[:8]
        start = T0 + 10_000 * n
        for dataset, reads in (("typical", 1000), ("large", 10000)):
            for gpus in (1, 2):
                for repeat, spread in enumerate((1.0, 1.1)):
                    record = synthetic_record(
                        dataset,
                        reads,
                        gpus,
                        repeat,
                        spread * SLOWDOWN[commit],
                        commit=commit,
                        scale=scale,
                        samples=samples,
                        start=start,
                        static_bytes=gib_bytes,
                        peak_per_token=1000 if samples else 0,
                    )
                    write_json(folder / f"end_to_end-{dataset}-{gpus}gpu-all-r{repeat}.json", record)
        for variant, factor in VARIANT_FACTORS.items():
            record = synthetic_record(
                "typical",
                1000,
                1,
                0,
                factor * SLOWDOWN[commit],
                variant=variant,
                commit=commit,
                suite="variants",
                scale=scale,
                samples=samples,
                start=start,
                static_bytes=gib_bytes,
                peak_per_token=PEAK_PER_TOKEN[variant] if samples else 0,
            )
            write_json(folder / f"variants-typical-1gpu-{variant}-r0.json", record)
        # a memory-suite experiment (capped memory, OOM back-offs): neither a variant nor a projection input
        oom = synthetic_record(
            "typical",
            1000,
            1,
            0,
            10.0,
            variant="oom",
            commit=commit,
            suite="memory",
            scale=scale,
            samples=samples,
            start=start,
        )
        write_json(folder / "memory-typical-1gpu-oom-r0.json", oom)
        write_json(
            root / "m1" / f"{commit[:8]}-existing.json",
            {
                "commit_hash": commit,
                "env_name": "existing",
                "date": date,
                "params": {"machine": "m1"},
                "python": "3.12",
                "requirements": {},
                "env_vars": {},
                "result_columns": ["result", "params", "version"],
                "results": {"end_to_end.EndToEnd.track_projected_hours": [[5.0 + n, 2.0], [["1", "4"]], "v1"]},
                "durations": {},
                "version": 2,
            },
        )
    write_json(root / "m1" / "machine.json", {"machine": "m1", "version": 1})
    write_json(
        root / "benchmarks.json",
        {
            "version": 2,
            "end_to_end.EndToEnd.track_projected_hours": {
                "name": "end_to_end.EndToEnd.track_projected_hours",
                "params": [["1", "4"]],
                "param_names": ["gpus"],
                "type": "track",
                "unit": "hours",
                "version": "v1",
            },
        },
    )
    write_json(
        root / "datasets.json", {"datasets": {"full": {"reads": 6_000_000, "composition": composition(6_000_000)}}}
    )
    return root


@pytest.fixture
def tree(tmp_path):
    return build_tree(tmp_path / "results")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The report of the two-commit tree, rendered once: (output folder, report.json as a dict)."""
    root = tmp_path_factory.mktemp("rendered")
    assert run_report(build_tree(root / "results"), root / "report") == 0
    return root / "report", json.loads((root / "report" / "report.json").read_text())


def tree_options(tree) -> list[str]:
    """The synthetic tree's asv results, RunRecords and dataset definitions, as the scripts take them."""
    return ["--results", str(tree), "--records", str(tree / "records"), "--datasets-file", str(tree / "datasets.json")]


def run_project(tree, *extra):
    return load_script("project").main([*tree_options(tree), *extra])


def run_report(tree, out, *extra):
    return load_script("report").main([*tree_options(tree), "--out", str(out), *extra])


# --- project.py ---------------------------------------------------------------------------------------


def test_project_json_schema_and_numbers(tree, tmp_path, capsys):
    out = tmp_path / "projection.json"
    assert run_project(tree, "--json", str(out)) == 0
    document = json.loads(out.read_text())
    assert document["schema"] == "vnp-projection/1" and document["gpu_counts"] == [1, 2, 4, 8]
    assert [g["commit"] for g in document["groups"]] == ["cccc2222", "aaaa1111"]  # by asv's commit date
    group = document["groups"][-1]
    assert {
        "machine",
        "commit",
        "target",
        "scale",
        "variant",
        "date",
        "fit",
        "projection",
        "check",
        "composition",
    } <= set(group)
    assert set(group["fit"]["stages"]) == {*TRUTH, "startup"}
    # eight end_to_end runs plus the variants suite's `all` run
    assert group["fit"]["measured_gpus"] == [1, 2] and group["fit"]["runs"] == 9
    rows = group["projection"]["rows"]
    assert [r["gpus"] for r in rows] == [1, 2, 4, 8]
    assert [r["extrapolated"] for r in rows] == [False, False, True, True]
    for row in rows:
        assert {
            "stages",
            "total_hours",
            "low_hours",
            "high_hours",
            "meets_target",
            "meets_target_at_high",
            "max_reads_within_target",
            "speedup",
            "scaling_efficiency",
        } <= set(row)
        assert row["low_hours"] <= row["total_hours"] <= row["high_hours"]
    # the repeats are 1.0x and 1.1x the truth, times the commit's slowdown
    full = composition(6_000_000)
    assert rows[0]["low_hours"] == pytest.approx(1.2 * true_total(full, 1) / 3600, rel=1e-6)
    assert rows[0]["high_hours"] == pytest.approx(1.2 * 1.1 * true_total(full, 1) / 3600, rel=1e-6)
    assert group["composition"]["estimated"] == [] and "datasets.json" in group["composition"]["source"]
    assert group["check"]["available"]
    printed = capsys.readouterr().out
    assert "| **total** |" in printed and "Across commits on m1" in printed


def test_project_answers_for_a_cohort_on_several_nodes(tree, tmp_path, capsys):
    out = tmp_path / "projection.json"
    assert run_project(tree, "--samples", "10", "--gpus-per-node", "2", "--nodes", "4", "--json", str(out)) == 0
    cohort = json.loads(out.read_text())["groups"][-1]["cohort"]
    sample_hours = 1.2 * true_total(composition(6_000_000), 2) / 3600  # the newest commit's runs, 1.0x and 1.1x
    assert [r["samples_per_node"] for r in cohort["rows"]] == [10, 5, 3]
    assert sample_hours <= cohort["rows"][-1]["hours"] / 3 <= 1.1 * sample_hours
    assert "Projected, not measured" in capsys.readouterr().out
    assert run_project(tree, "--nodes", "0") == 2


def test_project_fills_a_reads_only_composition_and_flags_it(tree, tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"reads": 3_000_000}))
    out = tmp_path / "p.json"
    assert run_project(tree, "--composition", str(tmp_path / "c.json"), "--json", str(out), "--quiet") == 0
    comp = json.loads(out.read_text())["groups"][0]["composition"]
    assert comp["composition"]["esm_tokens"] == pytest.approx(composition(3_000_000)["esm_tokens"])
    assert "esm_tokens" in comp["estimated"]


def test_project_scans_a_users_fasta(tree, tmp_path):
    pytest.importorskip("benchmarks.harness.datasets")
    fasta = tmp_path / "reads.fa"
    fasta.write_text(">open\n" + "GCT" * 50 + "\n>closed\n" + "TAA" * 50 + "\n")
    out = tmp_path / "p.json"
    assert run_project(tree, "--sample", str(fasta), "--json", str(out), "--quiet") == 0
    comp = json.loads(out.read_text())["groups"][0]["composition"]
    assert comp["composition"]["reads"] == 2 and comp["composition"]["bases"] == 300
    assert "scan of" in comp["source"]


def test_project_errors_are_one_line(tmp_path, capsys):
    assert run_project(tmp_path / "nowhere") == 2
    assert capsys.readouterr().err.count("\n") == 1
    tree = build_tree(tmp_path / "results")
    assert run_project(tree, "--variant", "turbo") == 2
    assert "variants found: all, baseline" in capsys.readouterr().err
    assert run_project(tree, "--check", "typical") == 2
    assert "FROM:TO" in capsys.readouterr().err


def test_project_warns_when_the_check_is_off(tmp_path, capsys):
    tree = tmp_path / "results"
    heavy = {stage: (60.0, rate, p) for stage, (_, rate, p) in TRUTH.items()}  # big fixed costs: proportional fails
    for dataset, reads in (("typical", 1000), ("large", 10000)):
        write_json(
            tree / "records" / "m1" / "abcdef12" / f"e-{dataset}.json", synthetic_record(dataset, reads, 1, truth=heavy)
        )
    assert run_project(tree, "--quiet") == 0
    assert "warning" in capsys.readouterr().err


# --- report.py ----------------------------------------------------------------------------------------


def test_report_renders_markdown_json_and_real_pngs(rendered):
    out, report = rendered
    assert report["schema"] == "vnp-report/1" and report["commit"] == "aaaa1111"  # the newest by asv's date
    assert set(report["plots"]) == {"projection", "stages", "memory_timeline", "scaling", "variants", "history"}
    for name in report["plots"].values():
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    markdown = (out / "report.md").read_text()
    for heading in (
        "## The answer",
        "## Bottleneck",
        "## Stage breakdown",
        "## GPU memory over time",
        "## Peak GPU memory per stage",
        "## Optimisations (variants)",
        "## Scaling",
        "## Throughput",
        "## GPU utilisation",
        "## Token budget per card",
        "## History",
        "## A cohort of samples (projected)",
    ):
        assert heading in markdown
    for name in report["plots"].values():
        assert f"]({name})" in markdown
    assert "no GPU samples" not in markdown


def test_report_variant_speedups_and_memory_against_baseline(rendered):
    rows = {r["variant"]: r for r in rendered[1]["variants"]["rows"]}
    assert list(rows) == list(VARIANT_FACTORS)
    for variant, factor in VARIANT_FACTORS.items():
        assert rows[variant]["speedup"] == pytest.approx(VARIANT_FACTORS["baseline"] / factor, rel=1e-6)
        delta = (PEAK_PER_TOKEN[variant] - PEAK_PER_TOKEN["baseline"]) * 16384
        assert rows[variant]["memory_delta_bytes"] == pytest.approx(delta)


def test_report_token_budget_from_measured_memory_per_token(rendered):
    budget = rendered[1]["token_budget"]["stages"]["esm2"]
    assert budget["bytes_per_token"] == pytest.approx(1000) and budget["static_bytes"] == pytest.approx(STATIC)
    expected = int((80 * GIB * 0.9 - STATIC) / 1000 // 1024 * 1024)
    assert budget["budget_by_card_gb"]["80"] == expected


def test_report_scaling_history_and_bottleneck_follow_the_numbers(rendered):
    report = rendered[1]
    scaling = {r["gpus"]: r for r in report["scaling"]["rows"]}
    assert scaling[2]["ideal_speedup"] == 2 and 1 < scaling[2]["speedup"] < 2
    history = report["history"]["rows"]
    assert [r["commit"] for r in history] == ["cccc2222", "aaaa1111"]
    gpus = str(report["history"]["gpus"])
    assert history[1]["hours"][gpus] == pytest.approx(1.2 * history[0]["hours"][gpus], rel=1e-6)
    assert all(r["fitted_on"] == ["large", "typical"] for r in history)  # what each commit's projection rests on
    assert history[1]["asv_tracked"] == {
        "end_to_end.EndToEnd.track_projected_hours(1)": 6.0,
        "end_to_end.EndToEnd.track_projected_hours(4)": 2.0,
    }
    bottleneck = report["bottleneck"]
    row = next(r for r in report["projection"]["projection"]["rows"] if r["gpus"] == bottleneck["gpus"])
    assert bottleneck["stage"] == max(row["stages"], key=lambda s: row["stages"][s]["hours"])
    assert bottleneck["findings"][0].startswith(f"`{bottleneck['stage']}` dominates")


def test_report_on_cpu_results_says_what_is_missing(tmp_path):
    tree = build_tree(tmp_path / "results", samples=False, scale="ci")
    out = tmp_path / "report"
    assert run_report(tree, out) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["memory_timeline"]["note"] == "no GPU samples"
    assert report["utilisation"]["note"] == "no GPU samples"
    assert "CPU" in report["peak_memory"]["note"] and report["token_budget"]["stages"] == {}
    assert "memory_timeline" not in report["plots"] and "projection" in report["plots"]
    markdown = (out / "report.md").read_text()
    assert "no GPU samples" in markdown and "`ci` scale" in markdown


def test_report_with_a_single_run(tmp_path):
    tree = tmp_path / "results"
    write_json(tree / "records" / "m1" / "abcdef12" / "e.json", synthetic_record())
    out = tmp_path / "report"
    assert run_report(tree, out) == 0
    report = json.loads((out / "report.json").read_text())
    assert "one GPU count" in report["scaling"]["note"] and report["variants"]["note"] == "only one variant measured"
    assert not report["projection"]["check"]["available"]
    assert "proportional" in (out / "report.md").read_text()


def test_formatting_helpers():
    assert R.fmt_count(6_000_000) == "6 M" and R.fmt_count(13_800) == "13.8 k" and R.fmt_count(300) == "300"
    assert R.fmt_bytes(8 * GIB) == "8.00 GiB" and R.fmt_bytes(None) == "n/a"
    assert R.markdown_table(["a", "b"], [[1, 2]]).splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def test_the_variants_table_says_what_esm2_ran_in_not_what_was_asked():
    """An fp8 run whose fidelity check failed ran in bf16: the row must not read as an fp8 measurement."""
    from analysis.record import Record
    from analysis.sections import variants_section

    documents = {v: synthetic_record("typical", 1000, 1, 0, f, variant=v, suite="variants")
                 for v, f in (("baseline", 5.0), ("bf16", 1.2), ("all", 1.0), ("fp8", 0.9))}
    documents["fp8"]["run"]["config"]["precision"] = "fp8"
    documents["fp8"]["run"]["precision_used"] = "bf16"
    rows = {r["variant"]: r for r in variants_section([Record.from_json(d) for d in documents.values()])["rows"]}
    assert rows["fp8"]["precision_used"] == "bf16" and rows["all"]["precision_used"] == "bf16"
    documents["fp8"]["run"]["precision_used"] = "fp8"  # a claim without a passed check is not believed
    rows = {r["variant"]: r for r in variants_section([Record.from_json(d) for d in documents.values()])["rows"]}
    assert rows["fp8"]["precision_used"].startswith("unverified fp8")
    from analysis.advice import _best_variant_for  # the fastest row, but its claim is not believed: no advice
    assert _best_variant_for({"rows": list(rows.values())}, "esm2")[0] == "bf16"
    documents["fp8"]["run"]["calibration"] = [{"device": "cuda:0", "passed": True}]
    rows = {r["variant"]: r for r in variants_section([Record.from_json(d) for d in documents.values()])["rows"]}
    assert rows["fp8"]["precision_used"] == "fp8"
    assert _best_variant_for({"rows": list(rows.values())}, "esm2")[0] == "fp8"


# --- inside the models: the asv kernels suite ----------------------------------------------------------
KERNEL_PARAMS = {
    "kernels.KernelShare.track_share": [["'esm2'"], ["'eager'"], ["'rotary'", "'activation'", "'other'"]],
    "kernels.KernelTime.track_ns_per_token": [["'esm2'"], ["'eager'"], ["'gemm'", "'rotary'", "'activation'",
                                                                         "'other'"]],
    "kernels.GemmCeiling.track_shortfall": [["'esm2'"], ["'eager'"]],
    "kernels.GemmCeiling.track_seconds_per_million_tokens": [["'esm2'"], ["'eager'"]],
}


def add_kernel_results(root, commit, shortfall):
    """asv results of the kernels suite for ``commit`` (another environment's file): rotary 12%, GELU 5%."""
    benchmarks = json.loads((root / "benchmarks.json").read_text())
    for name, params in KERNEL_PARAMS.items():
        benchmarks[name] = {"name": name, "params": params, "param_names": ["model", "kernels", "category"][
            : len(params)], "type": "track", "unit": "x", "version": "1"}
    write_json(root / "benchmarks.json", benchmarks)
    values = {"kernels.KernelShare.track_share": [0.12, 0.05, 0.1],
              "kernels.KernelTime.track_ns_per_token": [7500.0, 1300.0, 530.0, 1060.0],
              "kernels.GemmCeiling.track_shortfall": [shortfall],
              "kernels.GemmCeiling.track_seconds_per_million_tokens": [10.6]}
    write_json(root / "m1" / f"{commit[:8]}-gpu.json", {
        "commit_hash": commit, "env_name": "gpu", "date": COMMITS[commit], "params": {"machine": "m1"},
        "python": "3.12", "requirements": {}, "env_vars": {}, "result_columns": ["result", "params", "version"],
        "results": {name: [values[name], KERNEL_PARAMS[name], "1"] for name in KERNEL_PARAMS},
        "durations": {}, "version": 2})


def test_report_shows_the_time_between_the_gemms_and_what_to_fuse_next(tmp_path):
    tree = build_tree(tmp_path / "results")
    add_kernel_results(tree, "aaaa1111bbbb2222", shortfall=0.23)
    add_kernel_results(tree, "cccc2222dddd3333", shortfall=0.25)
    assert run_report(tree, tmp_path / "report") == 0
    section = json.loads((tmp_path / "report" / "report.json").read_text())["kernels"]
    [row] = section["rows"]
    assert (row["model"], row["kernels"], row["fuse_next"]) == ("esm2", "eager", "rotary")  # not `other`
    assert row["fraction_of_gemm_ceiling"] == pytest.approx(0.77)
    shares = {c["category"]: c["share"] for c in row["categories"]}
    assert shares["gemm"] == pytest.approx(0.73) and shares["rotary"] == pytest.approx(0.12)
    assert [h["commit"] for h in section["history"]] == ["cccc2222", "aaaa1111"]  # by asv's dates
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "**ESM-2, eager kernels**: 77.0% of its GEMM-only ceiling" in markdown and "Fuse next: `rotary`" in markdown
    assert "| `cccc2222` | 75.0% |" in markdown


def test_report_without_kernel_results_says_so(rendered):
    assert rendered[1]["kernels"]["note"] == "no `kernels` suite results for commit aaaa1111 on m1"
    assert "no `kernels` suite results" in (rendered[0] / "report.md").read_text()
