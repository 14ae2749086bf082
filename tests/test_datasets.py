"""Benchmark datasets: calibration against the real subset, determinism, the sha256-checked cache."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.harness import counting, datasets, original

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
    counted = datasets.count_composition(dataset.path, dataset.model_type)
    assert {k: counted[k] for k in KEYS - {"dnabert_tokens"}} == {
        k: dataset.composition[k] for k in KEYS - {"dnabert_tokens"}
    }


def plain_original_counts(path, chunk_size):
    """The counts, one record, chunk and frame at a time with original.py: the statement of the rules."""
    counts = dict.fromkeys(KEYS - {"dnabert_tokens"}, 0)
    for record_id, sequence in original.read_records(path):
        chunks = original.split_record(record_id, sequence, chunk_size)
        frames = [frame for chunk_id, chunk in chunks for frame in original.identify_frames(chunk_id, chunk)]
        counts["reads"] += 1
        counts["bases"] += len(sequence)
        counts["chunks"] += len(chunks)
        counts["chunks_with_frame"] += len({frame_id[:-2] for frame_id, _, _ in frames})
        counts["frames"] += len(frames)
        counts["esm_tokens"] += sum(min(len(protein) + 2, 1024) for _, _, protein in frames)
    return counts


def test_vectorised_counts_equal_the_plain_original_rules_on_awkward_input(golden_dir, tmp_path):
    """IUPAC codes, lowercase, multi-line records, descriptions, reads shorter than a codon, long contigs."""
    rng = np.random.default_rng(11)
    alphabet = np.frombuffer(b"ACGTACGTACGTacgtNRYKM*", dtype=np.uint8)
    records = [bytes(alphabet[rng.integers(0, alphabet.size, int(n))]).decode() for n in rng.integers(1, 1400, 400)]
    awkward = tmp_path / "awkward.fa"
    awkward.write_text("".join(f">r{i} some description\n{seq[:70]}\n{seq[70:]}\n" for i, seq in enumerate(records)))
    shorter_than_a_codon = tmp_path / "short.fa"
    shorter_than_a_codon.write_text(">a\nA\n>b\nGC\n")
    crlf, lone_cr = tmp_path / "crlf.fa", tmp_path / "cr.fa"  # Windows and old-Mac line ends, as text mode reads them
    crlf.write_bytes(awkward.read_bytes().replace(b"\n", b"\r\n"))
    lone_cr.write_bytes(awkward.read_bytes().replace(b"\n", b"\r"))
    # Whitespace in sequence lines: the original's parser drops a tab or space anywhere, keeps \x0b and \x0c
    # (bases that are not ACGT) even at a line's end
    whitespace = tmp_path / "whitespace.fa"
    whitespace.write_text(">t\tdescription\nATG\tAAA\tCCC\t\nGG G\x0b\n>u\nATGA\x0cAA\x0c\n>v\nAT\x0bGAAATAG\n")
    cases = [
        (golden_dir / "generated" / "reads.fa", 300),
        (golden_dir / "generated" / "contigs.fa", 500),
        (golden_dir / "generated" / "contigs300.fa", 300),
        (awkward, 300),
        (awkward, 500),
        (shorter_than_a_codon, 300),
        (crlf, 300),
        (lone_cr, 500),
        (whitespace, 300),
    ]
    for path, chunk in cases:
        counted = datasets.count_composition(path, chunk)
        assert {k: counted[k] for k in KEYS - {"dnabert_tokens"}} == plain_original_counts(path, chunk), path.name
        assert counted["dnabert_tokens_estimated"] is True


# Sequence lines of ACGT, IUPAC, lowercase and the whitespace FASTA parsers disagree on (tab, space, \x0b, \x0c).
SEQUENCE_LINES = st.lists(st.text("ACGTNacgtR \t\x0b\x0c", max_size=90), max_size=6)


@settings(max_examples=200, deadline=None)
@given(records=st.lists(st.tuples(st.text("ACGT", min_size=1, max_size=40), SEQUENCE_LINES), min_size=1,
                        max_size=6),
       newline=st.sampled_from(["\n", "\r\n", "\r"]), chunk_size=st.sampled_from([300, 500]))
def test_counts_equal_the_original_rules_on_any_whitespace(tmp_path_factory, records, newline, chunk_size):
    """Each record starts with a base (the original divides by zero on an empty one); the rest is anything."""
    text = "".join(f">r{i}{newline}{first}{newline}" + "".join(line + newline for line in lines)
                   for i, (first, lines) in enumerate(records))
    path = tmp_path_factory.mktemp("fa") / "x.fa"
    path.write_bytes(text.encode())
    counted = counting.count_file(path, chunk_size, workers=1)
    assert {k: counted[k] for k in KEYS - {"dnabert_tokens"}} == plain_original_counts(path, chunk_size)


@pytest.mark.parametrize("before", ["junk\n", "\n", ";comment\n", " >x\n"])
def test_text_before_the_first_header_is_refused_as_the_original_refuses_it(tmp_path, before):
    path = tmp_path / "x.fa"
    path.write_text(f"{before}>a\nATGAAACCC\n")
    with pytest.raises(ValueError):
        list(original.read_records(path))
    with pytest.raises(ValueError, match="before|header"):
        counting.count_file(path, 300)


def test_a_large_file_is_counted_in_parallel_to_the_same_numbers(tmp_path, monkeypatch):
    """Split at record boundaries, in blocks smaller than a record: every split gives the serial counts."""
    path = generate_reads(tmp_path, 3000, seed=8)
    serial = counting.count_file(path, 300, workers=1)
    monkeypatch.setattr(counting, "BLOCK_BYTES", 100)  # blocks cut inside records, and records span blocks
    assert counting.count_file(path, 300, workers=1) == serial
    assert counting.count_file(path, 300, workers=3) == serial
    assert len(counting.split_ranges(path, 3)) == 3
    assert all(path.read_bytes()[start : start + 1] == b">" for start, _ in counting.split_ranges(path, 3))


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
    cached = list((cache / "compositions").glob("*.json"))  # counted once, then cached under the file's sha256
    assert [p.name.split("-")[0] for p in cached] == [datasets.sha256_file(sample)]
    cached[0].write_text(json.dumps({**dataset.composition, "frames": 1}))
    assert datasets.get("large").composition["frames"] == 1  # read back, not recounted


def test_a_user_file_the_original_cannot_read_is_a_dataset_error_and_caches_nothing(cache, tmp_path, monkeypatch):
    sample = tmp_path / "notes.fa"
    sample.write_text("sample notes\n>a\nATGAAACCC\n")
    monkeypatch.setenv("VNP_BENCH_DATA", str(sample))
    with pytest.raises(datasets.DatasetError, match="not a '>' header"):
        datasets.get("large")
    assert not list(cache.glob("compositions/*.json"))


def test_unknown_dataset_is_a_clear_error(cache):
    with pytest.raises(datasets.DatasetError, match="no dataset 'nope'"):
        datasets.get("nope")


def test_make_data_cli(cache):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "scripts.make_data", *args], capture_output=True, text=True, cwd=REPO
        )

    verified = run("verify", "tiny", "tiny_contigs")
    assert verified.returncode == 0, verified.stderr
    assert "tiny_contigs" in verified.stdout
    described = run("describe", "tiny")
    assert described.returncode == 0 and "frames_per_read" in described.stdout
    assert run("path", "tiny").stdout.strip() == str(cache / "tiny-g1.fa")
    assert run("verify", "nope").returncode != 0
