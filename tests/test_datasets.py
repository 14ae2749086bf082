"""Benchmark datasets: calibration against the real subset, determinism, the sha256-checked cache."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.harness import datasets

REPO = Path(__file__).resolve().parents[1]
DEFINITIONS = datasets.load_definitions()
KEYS = {"reads", "bases", "chunks", "chunks_with_frame", "frames", "esm_tokens", "dnabert_tokens"}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VNP_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VNP_BENCH_DATA", raising=False)
    return tmp_path / "cache"


def generate_reads(tmp_path, reads, seed, name="sample"):
    path = tmp_path / f"{name}.fa"
    datasets.generate(name, {"kind": "reads", "reads": reads, "seed": seed, "model_type": 300}, DEFINITIONS, path)
    return path


def test_reads_cost_what_real_reads_cost(tmp_path):
    """5,000 reads, a seed no dataset uses: the three ratios the real 1M-read subset fixes."""
    composition = datasets.count_composition(generate_reads(tmp_path, 5000, seed=424242), 300)
    target = DEFINITIONS["calibration"]
    reads = composition["reads"]
    assert reads == composition["chunks"] == 5000  # short reads: one chunk each
    assert composition["chunks_with_frame"] / reads == pytest.approx(target["chunks_with_frame_per_read"], abs=0.03)
    assert composition["frames"] / reads == pytest.approx(target["frames_per_read"], abs=0.04)
    assert composition["esm_tokens"] / composition["frames"] == pytest.approx(target["esm_tokens_per_frame"], abs=1.0)


def test_planted_frames_are_what_lifts_the_yield(tmp_path):
    """Without planted frames the same generator gives random-sequence yields (~43% of reads, ~0.55 frames)."""
    unplanted = json.loads(json.dumps(DEFINITIONS))
    unplanted["generators"]["reads"]["planted_fraction"] = 0.0
    path = tmp_path / "random.fa"
    datasets.generate("random", {"kind": "reads", "reads": 5000, "seed": 5, "model_type": 300}, unplanted, path)
    composition = datasets.count_composition(path, 300)
    assert composition["chunks_with_frame"] / 5000 == pytest.approx(0.43, abs=0.03)
    assert composition["frames"] / 5000 < 0.65


def test_generation_is_deterministic_and_seeded(tmp_path):
    first, again = generate_reads(tmp_path, 300, seed=1, name="a"), generate_reads(tmp_path, 300, seed=1, name="b")
    other = generate_reads(tmp_path, 300, seed=2, name="c")
    assert first.read_bytes().replace(b">a_", b">") == again.read_bytes().replace(b">b_", b">")
    assert first.read_bytes().replace(b">a_", b">") != other.read_bytes().replace(b">c_", b">")


def test_blocks_continue_the_numbering_with_fresh_sequence(tmp_path):
    """Past one block (the unit of memory), IDs run on and the next block is not a copy of the first."""
    lines = generate_reads(tmp_path, datasets.BLOCK_READS + 10, seed=3, name="s").read_text().splitlines()
    ids, reads = lines[0::2], lines[1::2]
    assert ids == [f">s_{i}" for i in range(1, datasets.BLOCK_READS + 11)]
    assert reads[datasets.BLOCK_READS : datasets.BLOCK_READS + 10] != reads[:10]


def test_reads_block_lengths_and_alphabet():
    params = DEFINITIONS["generators"]["reads"]
    bases, lengths = datasets.reads_block(np.random.default_rng(0), 2000, params)
    assert bases.shape == (2000, params["read_length"]) and bases.max() <= 3
    assert lengths.max() == params["read_length"] and lengths.min() >= params["trimmed_min"]


def test_definitions_cover_the_issue():
    sets = DEFINITIONS["datasets"]
    assert sets["typical"]["reads"] == 20_000 and sets["large"]["reads"] == 200_000
    assert sets["subset1m"]["reads"] == 1_000_000 and sets["full"]["reads"] == 6_000_000
    assert 100 <= sets["tiny"]["reads"] <= 1000
    assert sets["contigs"]["kind"] == "contigs" and sets["contigs"]["model_type"] == 500
    for name, entry in sets.items():
        assert len(entry["sha256"]) == 64, name
        assert KEYS <= set(entry["composition"]), name


@pytest.mark.parametrize("name", ["tiny", "small", "tiny_contigs"])
def test_cached_files_match_their_definition(cache, name):
    """Generated here byte for byte as recorded, and the recorded composition follows the original's rules."""
    dataset = datasets.get(name)
    assert dataset.path.parent == cache
    assert datasets.sha256_file(dataset.path) == DEFINITIONS["datasets"][name]["sha256"]
    counted = datasets.count_composition(dataset.path, dataset.model_type, rules="original")
    assert {k: counted[k] for k in KEYS - {"dnabert_tokens"}} == \
           {k: dataset.composition[k] for k in KEYS - {"dnabert_tokens"}}


def test_pipeline_and_original_rules_agree_on_awkward_input(golden_dir):
    """IUPAC codes, lowercase, multi-line records, descriptions: vnp.preprocess and original.py count alike."""
    pytest.importorskip("vnp.preprocess")
    for name, chunk in (("reads.fa", 300), ("contigs.fa", 500), ("contigs300.fa", 300)):
        path = golden_dir / "generated" / name
        pipeline = datasets.count_composition(path, chunk)
        original = datasets.count_composition(path, chunk, rules="original")
        assert {k: pipeline[k] for k in KEYS - {"dnabert_tokens"}} == \
               {k: original[k] for k in KEYS - {"dnabert_tokens"}}, name


def test_a_changed_file_is_refused_and_removed(cache):
    path = datasets.get("tiny").path
    path.write_bytes(path.read_bytes().replace(b"A", b"C", 1))
    with pytest.raises(datasets.DatasetError, match="sha256"):
        datasets.get("tiny")
    assert not path.exists()
    assert datasets.get("tiny").path.exists()  # regenerated on the next use


def test_user_file_replaces_every_dataset(cache, tmp_path, monkeypatch):
    sample = generate_reads(tmp_path, 200, seed=9)
    monkeypatch.setenv("VNP_BENCH_DATA", str(sample))
    dataset = datasets.get("large")
    assert dataset.path == sample.resolve() and dataset.name == "user-sample"
    assert dataset.composition["reads"] == 200 and dataset.composition["frames"] > 0
    assert list((cache / "compositions").glob("*.json"))  # counted once, then cached


def test_unknown_dataset_is_a_clear_error(cache):
    with pytest.raises(datasets.DatasetError, match="no dataset 'nope'"):
        datasets.get("nope")


def test_make_data_cli(cache):
    run = lambda *args: subprocess.run([sys.executable, str(REPO / "scripts" / "make_data.py"), *args],
                                       capture_output=True, text=True, cwd=REPO)
    verified = run("verify", "tiny", "tiny_contigs")
    assert verified.returncode == 0, verified.stderr
    assert "tiny_contigs" in verified.stdout
    described = run("describe", "tiny")
    assert described.returncode == 0 and "frames_per_read" in described.stdout
    assert run("path", "tiny").stdout.strip() == str(cache / "tiny-g1.fa")
    assert run("verify", "nope").returncode != 0
