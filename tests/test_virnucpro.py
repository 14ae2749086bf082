"""VirNucPro's own programs beside vnp: the weights kit, the targets, the comparison, and real runs on the CPU.

The real runs need clones of the original and the fork and their packages (`scripts/peers.sh setup SOURCE`
makes them in .peers/, which .ci/run does where the published bundles are at hand; VNP_PEER_* name others):
without them those tests skip, saying so in one line.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks import virnucpro
from benchmarks.harness import agreement, peer_programs, runs, targets, weights_kit
from benchmarks.harness import scale as scales

REPO = Path(__file__).resolve().parents[1]
CI = scales.SCALES["ci"]
READS = 40  # a few dozen: each program runs in well under a minute on a CPU


def have(*programs: str) -> str | None:
    """Why the real programs cannot run here, or None."""
    try:
        for program in programs:
            peer_programs.clone(program)
        if peer_programs.site() is None:
            raise peer_programs.Missing("no packages for VirNucPro's programs: set VNP_PEER_SITE, or run "
                                        "scripts/peers.sh setup")
        peer_programs.kit(CI)
    except peer_programs.Missing as missing:
        return str(missing)
    return None


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """One dataset and kit cache for the session: the small kit is written once (a few seconds)."""
    return tmp_path_factory.mktemp("peers-cache")


@pytest.fixture
def bench(tmp_path, cache, monkeypatch):
    for name, value in {"VNP_BENCH_RECORDS": tmp_path / "records", "VNP_BENCH_WORK": tmp_path / "work",
                        "VNP_BENCH_CACHE": cache, "VNP_BENCH_MACHINE": "peers-test"}.items():
        monkeypatch.setenv(name, str(value))
    for name in ("VNP_BENCH_COMMAND", "VNP_BENCH_TARGET", "VNP_BENCH_DATA"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def reads(tmp_path, monkeypatch) -> Path:
    """The first reads of the golden sample, as every dataset of the run."""
    lines = (REPO / "tests" / "data" / "golden" / "generated" / "reads.fa").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(">")]
    path = tmp_path / "few.fa"
    path.write_text("\n".join(lines[:starts[READS]]) + "\n")
    monkeypatch.setenv("VNP_BENCH_DATA", str(path))
    monkeypatch.setenv("VNP_BENCH_MODEL_TYPE", "300")
    return path


# -- the weights kit ----------------------------------------------------------------------------------

def dnabert_code() -> str:
    code = peer_programs._given("VNP_PEER_DNABERT_CODE", "dnabert-s-code")
    if not code:
        pytest.skip("no DNABERT-S model code: set VNP_PEER_DNABERT_CODE, or run scripts/peers.sh setup")
    return code


@pytest.fixture(scope="session")
def kit(tmp_path_factory) -> weights_kit.Kit:
    return weights_kit.write(tmp_path_factory.mktemp("kit") / "small", "small", seed=3, dnabert_code=dnabert_code())


def test_the_kit_checkpoint_is_what_fair_esm_loads_from_its_hub_cache(kit, monkeypatch):
    """fair-esm's own loader of the published name finds the checkpoint offline and every tensor fits."""
    import torch
    from esm import pretrained

    monkeypatch.setenv("TORCH_HOME", kit.environment()["TORCH_HOME"])
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # follow TORCH_HOME as a fresh process would
    model, alphabet = pretrained.esm2_t36_3B_UR50D()  # strict loading: no key missing or unexpected
    assert (model.num_layers, model.embed_dim, model.attention_heads) == kit.esm_shape == (36, 64, 4)
    stored = torch.load(kit.esm_checkpoint, weights_only=False)["model"]
    assert torch.equal(model.embed_tokens.weight, stored["encoder.embed_tokens.weight"].float())
    assert torch.equal(model.lm_head.weight, model.embed_tokens.weight)


def test_the_kit_is_the_same_on_every_writing(kit, tmp_path):
    """Seeded tensor by tensor: another writing with the same seed gives the same files; another seed, others."""
    import torch

    again = weights_kit.write(tmp_path / "again", "small", seed=3, dnabert_code=dnabert_code())
    for path in (kit.esm_checkpoint, kit.classifier(300, pickled=False), kit.dnabert_dir / "model.safetensors"):
        assert path.read_bytes() == (again.root / path.relative_to(kit.root)).read_bytes(), path
    one, other = (weights_kit.seeded_tensor((4, 4), torch.float32, seed, "x", "normal") for seed in (3, 4))
    assert not one.equal(other)


def test_without_fair_esm_the_kit_says_so_in_one_line(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "esm" else real(name, *args))
    with pytest.raises(weights_kit.KitError, match="pip install fair-esm==2.0.0"):
        weights_kit.write(tmp_path / "kit", "small", dnabert_code=tmp_path)
    assert not (tmp_path / "kit").exists()


def test_a_folder_that_is_no_kit_is_never_replaced(tmp_path):
    mine = tmp_path / "my-data"
    mine.mkdir()
    (mine / "reads.fa").write_text(">r\nACGT\n")
    with pytest.raises(weights_kit.KitError, match="is not a weights kit"):
        weights_kit.write(mine, "small", dnabert_code=dnabert_code())
    assert (mine / "reads.fa").exists() and not (tmp_path / "my-data.partial").exists()


def test_the_classifier_unpickles_as_the_original_loads_it(kit):
    """The original's prediction.py defines MLPClassifier in its __main__ and torch.loads the whole module."""
    script = textwrap.dedent(f"""
        import torch
        from torch import nn
        import torch.nn.functional as F
        from safetensors.torch import load_file

        class MLPClassifier(nn.Module):  # the original's class, as its script defines it
            def __init__(self, input_dim, hidden_dim, num_class):
                super().__init__()
                self.hidden_layer = nn.Linear(input_dim, hidden_dim)
                self.bn1 = nn.BatchNorm1d(hidden_dim)
                self.output_layer = nn.Linear(hidden_dim, num_class)
                self.dropout = nn.Dropout(0.5)

            def forward(self, x):
                return self.output_layer(self.dropout(F.relu(self.bn1(self.hidden_layer(x)))))

        model = torch.load({str(kit.classifier(300))!r}, weights_only=False).eval()
        same = load_file({str(kit.classifier(300, pickled=False))!r})
        assert all(torch.equal(value, same[key]) for key, value in model.state_dict().items())
        x = torch.randn(64, {768 + kit.esm_shape[1]})
        calls = model(x).argmax(1)
        print(type(model).__module__, int(calls.sum()), len(calls))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    module, virus, frames = done.stdout.split()
    assert module == "__main__" and 0 < int(virus) < int(frames)  # calls go both ways


def test_the_kit_dnabert_loads_in_transformers_remote_code_offline(kit):
    """transformers (the peers' version) loads the Hugging Face cache entry with its remote code, offline, and every
    tensor of the model comes from the kit's file."""
    site = peer_programs.site()
    if site is None:
        pytest.skip("no packages for VirNucPro's programs: set VNP_PEER_SITE, or run scripts/peers.sh setup")
    script = textwrap.dedent(f"""
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained("zhihan1996/DNABERT-S", trust_remote_code=True)
        model = AutoModel.from_pretrained("zhihan1996/DNABERT-S", trust_remote_code=True)
        stored = load_file({str(kit.dnabert_dir / 'model.safetensors')!r})
        state = model.state_dict()
        assert all(torch.equal(state[key.removeprefix("bert.")], value) for key, value in stored.items())
        assert set(state) <= {{key.removeprefix("bert.") for key in stored}}, set(state) - set(stored)
        ids = tokenizer("ACGTACGGATTACA", return_tensors="pt")["input_ids"][0]
        print(ids[0].item(), ids[-1].item())
    """)
    env = {**os.environ, **kit.environment(), "PYTHONPATH": peer_programs.python_path(site)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["1", "2"]  # [CLS] ... [SEP], as DNABERT-S numbers them


# -- the targets' command lines ----------------------------------------------------------------------

def test_without_a_clone_the_programs_are_skipped_with_one_line(bench, monkeypatch):
    monkeypatch.setenv("VNP_PEER_ORIGINAL", str(bench / "nowhere"))
    monkeypatch.delenv("VNP_PEER_FORK", raising=False)
    monkeypatch.setattr(peer_programs, "DEFAULTS", bench / "no-peers")
    with pytest.raises(peer_programs.Missing, match="VNP_PEER_ORIGINAL=.*nowhere is no clone"):
        peer_programs.clone("original")
    with pytest.raises(runs.Skip, match="no clone of VirNucPro's fork: set VNP_PEER_FORK"):
        runs.execute(runs.RunSpec.make("virnucpro", "typical", program="fork"), CI)


def fake_kit(tmp_path) -> weights_kit.Kit:
    return weights_kit.Kit(tmp_path / "kit", "small", 0, (36, 64, 4))


def test_the_original_runs_as_its_one_command_line(tmp_path):
    clone = tmp_path / "VirNucPro"
    target = targets.OriginalTarget(clone, fake_kit(tmp_path), site=tmp_path / "site")
    source = tmp_path / "reads.fasta"
    source.write_text(">r\nACGT\n")
    argv = target.argv(source, tmp_path / "out", {"model_type": 300, "gpus": [2], "quiet": True, "resume": False,
                                                  "model_size": "full"})
    assert argv == [sys.executable, str(clone / "prediction.py"), str(tmp_path / "out" / "reads.fa"), "300",
                    str(tmp_path / "kit" / "classifier" / "300_model.pth")]
    assert (tmp_path / "out" / "reads.fa").resolve() == source.resolve()  # it writes beside its input: OUTDIR
    env = target.environment({"gpus": [2], "threads": 1})
    assert env["CUDA_VISIBLE_DEVICES"] == "2" and env["OMP_NUM_THREADS"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path / "site")
    assert target.environment({"cpu": True})["CUDA_VISIBLE_DEVICES"] == ""
    for options, reason in (({"gpus": [0, 1]}, "gpus"), ({"precision": "bf16"}, "precision"),
                            ({"resume": True}, "resume"), ({"packing": True}, "packing")):
        with pytest.raises(targets.Unsupported, match=reason):
            target.argv(source, tmp_path / "o2", {"model_type": 300, **options})
    target.argv(source, tmp_path / "o3", {"packing": False, "persistent_models": False})  # what it does anyway
    with pytest.raises(targets.Unsupported, match="first '.fa'"):
        target.argv(source, tmp_path / "x.fa_runs" / "out", {"model_type": 300})


def test_the_original_stage_times_are_the_times_it_wrote_each_stage_last_file(tmp_path):
    target = targets.OriginalTarget(tmp_path / "clone", fake_kit(tmp_path))
    out = tmp_path / "out"
    files = ["reads_identified_protein.faa", "reads_nucleotide/output_1_DNABERT_S.pt",
             "reads_protein/output_1_ESM.pt", "reads_merged/output_1_merged.pt",
             "reads_merged/prediction_results.txt", "reads_merged/prediction_results_highestscore.csv"]
    for number, name in enumerate(files, start=1):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("x")
        os.utime(out / name, (100.0 + 10 * number, 100.0 + 10 * number))
    run = target.read_run(out, 0, 100.0, 175.0)
    assert [(s["name"], s["seconds"]) for s in run["stages"]] == [
        ("preprocess", 10.0), ("dnabert", 10.0), ("esm2", 10.0), ("merge", 10.0), ("classify", 10.0),
        ("consensus", 10.0)]
    assert run["wall_seconds"] == 75.0 and run["exit"]["status"] == "ok" and run["tool"]["name"] == "virnucpro-original"


def test_the_fork_gets_its_flags_and_its_environment(tmp_path, monkeypatch):
    target = targets.ForkTarget.from_clone(tmp_path / "fork", fake_kit(tmp_path), site=tmp_path / "site")
    monkeypatch.setattr(targets.Target, "flags", frozenset({"-m", "-o", "--model-path", "--gpus", "--device",
                                                            "--parallel", "--force", "--resume", "--quiet"}))
    argv = target.argv(Path("in.fa"), Path("out"), {"model_type": 300, "gpus": [0], "quiet": True, "resume": False,
                                                    "model_size": "full", "parallel": True, "flash_attention": True})
    assert argv[3:] == ["predict", "in.fa", "-o", "out", "-m", "300", "--gpus", "0", "--quiet", "--parallel",
                        "--model-path", str(tmp_path / "kit" / "classifier" / "300_model.pth"), "--force"]
    assert "--force" not in target.argv(Path("i"), Path("o"), {"model_type": 300, "resume": True})
    assert target.argv(Path("i"), Path("o"), {"cpu": True})[-5:-3] == ["--device", "cpu"]
    env = target.environment({"precision": "fp32", "flash_attention": True})
    first, site, clone = env["PYTHONPATH"].split(os.pathsep)[:3]
    assert (Path(first) / "flash_attn" / "__init__.py").is_file() and (site, clone) == (str(tmp_path / "site"),
                                                                                       str(tmp_path / "fork"))
    assert env["VIRNUCPRO_DISABLE_FP16"] == "1" and "VIRNUCPRO_DISABLE_FP16" not in target.environment({})
    for options, reason in (({"precision": "bf16"}, "precision"), ({"flash_attention": True}, "--parallel"),
                            ({"parallel": True, "cpu": True}, "CUDA"), ({"packing": False}, "--no-packing")):
        with pytest.raises(targets.Unsupported, match=reason):
            target.argv(Path("i"), Path("o"), options)


def test_vnp_reads_the_kit_files_instead_of_random_weights(tmp_path, monkeypatch):
    kit = fake_kit(tmp_path)
    kit.root.mkdir()
    (kit.root / "kit.json").write_text(json.dumps({"version": weights_kit.KIT_VERSION, "size": "small", "seed": 0,
                                                   "esm_shape": [36, 64, 4]}))
    target = targets.Target("vnp", ["vnp", "predict"])
    monkeypatch.setattr(targets.Target, "flags", frozenset(
        {"-m", "-o", "--model-size", "--esm-weights", "--trust-pickle", "--dnabert-dir", "--classifier"}))
    argv = target.argv(Path("i"), Path("o"), {"model_type": 300, "model_size": "tiny", "weights_kit": str(kit.root)})
    assert "--model-size" not in argv and argv[argv.index("--esm-weights") + 1] == str(kit.esm_checkpoint)
    assert argv[argv.index("--classifier") + 1] == str(kit.classifier(300, pickled=False)) and "--trust-pickle" in argv


# -- comparing outputs ------------------------------------------------------------------------------

def write_outputs(folder: Path, rows: list[tuple[str, str, float]], calls: dict[str, bool]) -> Path:
    folder.mkdir(parents=True)
    (folder / agreement.RESULTS).write_text("Sequence_ID\tPrediction\tscore1\tscore2\n" + "".join(
        f"{frame}\t{label}\t{1 - score}\t{score}\n" for frame, label, score in rows))
    (folder / agreement.CONSENSUS).write_text("Modified_ID\tIs_Virus\n" + "".join(
        f"{chunk}\t{call}\n" for chunk, call in calls.items()))
    return folder


def test_outputs_are_compared_frame_by_frame(tmp_path):
    ref = write_outputs(tmp_path / "ref", [("a_1F1", "virus", 0.9), ("a_1R1", "others", 0.2), ("b_1F2", "others", 0.4)],
                        {"a_1": True, "b_1": False})
    same = write_outputs(tmp_path / "same", [("a_1F1", "virus", 0.90002), ("a_1R1", "others", 0.2),
                                             ("b_1F2", "others", 0.4)], {"a_1": True, "b_1": False})
    found = agreement.compare(ref, same)
    assert (found.same_ids, found.same_order, found.labels, found.chunks) == (True, True, 1.0, 1.0)
    assert found.max_score_difference == pytest.approx(2e-5) and found.virus_share == pytest.approx(1 / 3)
    flipped = write_outputs(tmp_path / "flipped", [("a_1R1", "others", 0.2), ("a_1F1", "virus", 0.9),
                                                   ("b_1F2", "virus", 0.6)], {"a_1": True, "b_1": True})
    found = agreement.compare(ref, flipped)
    assert (found.same_ids, found.same_order, found.chunks) == (True, False, 0.5)
    assert found.labels == pytest.approx(2 / 3) and found.max_score_difference == pytest.approx(0.2)
    with pytest.raises(RuntimeError, match="order differ.*labels equal"):
        virnucpro.check("vnp", found)
    virnucpro.check("vnp", agreement.compare(ref, same))
    with pytest.raises(RuntimeError, match="scores differ by up to 2e-05"):
        virnucpro.REQUIRED["strict"] = (1.0, 1e-6)
        try:
            virnucpro.check("strict", agreement.compare(ref, same))
        finally:
            del virnucpro.REQUIRED["strict"]


def test_the_compat_flash_attn_is_per_sequence_attention():
    sys.path.insert(0, str(REPO / "benchmarks" / "harness" / "flash_attn_compat"))
    try:
        import flash_attn
        import torch
        import torch.nn.functional as F
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    q, k, v = (torch.randn(9, 2, 8) for _ in range(3))
    cu = torch.tensor([0, 4, 9], dtype=torch.int32)
    out = flash_attn.flash_attn_varlen_func(q=q, k=k, v=v, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=5,
                                            max_seqlen_k=5, dropout_p=0.0, causal=False, softmax_scale=0.3)
    for start, end in ((0, 4), (4, 9)):
        one = F.scaled_dot_product_attention(*(t[start:end].transpose(0, 1) for t in (q, k, v)), scale=0.3)
        assert torch.allclose(out[start:end], one.transpose(0, 1), atol=1e-6)
    with pytest.raises(NotImplementedError):
        flash_attn.flash_attn_varlen_func(q, k, v, cu, cu, 5, 5, dropout_p=0.1)


# -- the programs themselves, on a few dozen reads on the CPU ------------------------------------------

@pytest.mark.slow
def test_the_original_and_vnp_agree_on_the_same_weights(bench, reads):
    """vnp in fp32 gives the original's prediction_results.txt: the same IDs in the same order, every label, scores
    within 1e-4 (the agreement benchmark's own check), and the same calls."""
    reason = have("original")
    if reason:
        pytest.skip(reason)
    memo = str(bench)
    suite = virnucpro.Agreement()
    suite.setup(memo, "vnp-fp32", "typical")  # fails (RuntimeError) on any disagreement
    found = suite.agreement
    assert found.frames > 20 and found.same_order and found.labels == 1.0 and found.chunks == 1.0
    assert found.max_score_difference <= 1e-4 and 0 < found.virus_share < 1
    records = sorted(p.name for p in (bench / "records").glob("*/*/*.json"))
    assert records == ["virnucpro-user-few-1gpu-original-r0.json", "virnucpro-user-few-1gpu-vnp-fp32-r0.json"]
    (saved,) = (bench / "records").glob("*/*/agreement/typical-vnp-fp32.json")  # for the report
    assert json.loads(saved.read_text())["labels"] == 1.0
    original = json.loads(next((bench / "records").rglob("*original-r0.json")).read_text())
    assert original["harness"]["validated"] and original["harness"]["target"] == "original"
    assert original["harness"]["target_setup"]["commit"] and "transformers" in original["harness"]["target_setup"][
        "packages"]
    assert [s["name"] for s in original["run"]["stages"]][:3] == ["preprocess", "dnabert", "esm2"]


@pytest.mark.slow
def test_the_fork_runs_and_agrees_with_the_original_in_fp32(bench, reads):
    reason = have("original", "fork")
    if reason:
        pytest.skip(reason)
    memo = str(bench)
    fp32 = runs.RunSpec.make("virnucpro", "typical", variant="fork-fp32", options={"precision": "fp32"},
                             program="fork")
    suite = virnucpro.ProgramSuite()
    suite.run(memo, virnucpro.program_run("original", "typical"))
    suite.run(memo, fp32)
    from benchmarks.harness.suite import outputs

    found = agreement.compare(outputs(memo, virnucpro.program_run("original", "typical")), outputs(memo, fp32))
    assert found.same_ids and found.same_order and found.labels == 1.0 and found.max_score_difference <= 1e-4
    fork = json.loads(next((bench / "records").rglob("*fork-fp32-r0.json")).read_text())
    assert {"dnabert", "esm2"} <= {s["name"] for s in fork["run"]["stages"]}  # from its pipeline_state.json


# -- the report's "Against VirNucPro" ----------------------------------------------------------------

def test_the_report_sets_each_program_beside_vnp(tmp_path):
    from analysis.against import against_section
    from analysis.markdown import against_markdown
    from analysis.record import Record
    from tests.synthetic_runs import composition, synthetic_record

    def run(target, suite, variant, factor, commit="abcdef1234567890", start=1e9):
        document = synthetic_record("typical", reads=20_000, variant=variant, suite=suite, factor=factor,
                                    commit=commit, start=start, machine="h100x1")
        document["harness"].update(target=target, role="typical",
                                   target_setup={"describe": "v2.0", "commit": "a38c1dc0"} if target == "fork" else {})
        return Record.from_json(document)

    records = [run("vnp", "virnucpro", "vnp", 1.0), run("original", "virnucpro", "original", 15.0),
               run("fork", "virnucpro", "fork-flash", 4.0), run("fork", "end_to_end", "all", 5.0, commit="a38c1dc0")]
    folder = tmp_path / "h100x1" / "abcdef12" / "agreement"
    folder.mkdir(parents=True)
    (folder / "typical-vnp.json").write_text(json.dumps(
        {"other": "vnp", "frames": 16_000, "same_ids": True, "same_order": True, "labels": 0.9995, "chunks": 1.0,
         "max_score_difference": 0.003}))
    sample = composition(6_000_000)
    section = against_section(records, "h100x1", sample, tmp_path)
    by_program = {row["program"]: row for row in section["rows"]}
    assert list(by_program) == ["original", "fork", "fork-flash", "vnp"]  # the table's order
    assert by_program["original"]["vnp_speedup"] == pytest.approx(15.0) and by_program["vnp"]["vnp_speedup"] == 1.0
    assert by_program["original"]["projected_hours"]["4"] is None  # it uses one GPU, whatever the host has
    one, four = by_program["vnp"]["projected_hours"]["1"], by_program["vnp"]["projected_hours"]["4"]
    assert 0 < four < one and by_program["original"]["projected_hours"]["1"] == pytest.approx(15 * one, rel=0.01)
    assert by_program["vnp"]["agreement"]["labels"] == 0.9995 and by_program["fork"]["source"] == "v2.0"
    text = "\n".join(against_markdown(section))
    assert "one GPU only" in text and "8 of 16,000 labels differ, calls 100.00% equal" in text
    assert "RTX 4090" in text and section["cited"]["projected_hours_1"] == pytest.approx(3200 * 6 / 3600)
    assert against_section(records, "elsewhere", sample, tmp_path)["rows"] == []
