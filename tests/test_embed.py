"""`vnp embed`: per-record embeddings in a safetensors file, in input order, matching the engine's."""

import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file


@pytest.mark.parametrize("model, records, width", [
    ("esm2", {"p1": "MKTAYIAKQR", "p2": "GAVLIMFWPS", "p3": "ACDEFGHIKLMNPQRSTVWY"}, 64),
    ("dnabert", {"r1": "ACGTACGTAGCTAGCTAGGATC", "r2": "TTGACCA", "r3": "GGGCCCAAATTTACGTTGCA" * 3}, 96),
])
def test_embed_writes_ids_and_one_row_per_record(tmp_path, model, records, width):
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">{name} some description\n{seq.lower()}\n" for name, seq in records.items()))
    out = tmp_path / "emb.safetensors"
    env = {**os.environ, "VNP_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "vnp", "embed", model, str(fasta), "-o", str(out),
                           "--model-size", "tiny", "--cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "random weights" in done.stderr
    tensors = load_file(out)
    assert bytes(tensors["ids"]).decode().split("\n") == list(records)
    embeddings = tensors["embeddings"]
    assert embeddings.shape == (len(records), width) and embeddings.dtype == np.float32
    assert np.isfinite(embeddings).all()
    assert len({row.tobytes() for row in embeddings}) == len(records)  # different inputs, different rows

    # the same records in another order give the same rows: batching does not leak between records
    shuffled = tmp_path / "shuffled.fa"
    names = list(records)[::-1]
    shuffled.write_text("".join(f">{n}\n{records[n]}\n" for n in names))
    again = tmp_path / "again.safetensors"
    subprocess.run([sys.executable, "-m", "vnp", "embed", model, str(shuffled), "-o", str(again),
                    "--model-size", "tiny", "--cpu"], check=True, capture_output=True, env=env, timeout=300)
    np.testing.assert_allclose(load_file(again)["embeddings"][::-1], embeddings, rtol=1e-5, atol=1e-6)


def test_embed_refuses_a_missing_input(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vnp", "embed", "esm2", str(tmp_path / "nope.faa"), "-o",
                           str(tmp_path / "x.safetensors"), "--model-size", "tiny", "--cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "does not exist" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("text, words", [
    (">p1\nMKTA\n>p2 x\nGAVL\n>p1 again\nACDE\n", ["duplicate record ID 'p1'", "#1 and #3"]),
    (">p1\nMKTA\n>\nGAVL\n", ["#2", "no ID"]),
    (">p1\nMKTA\n>p2\xa0x\nGAVL\n>p2\xa0y\nACDE\n", ["duplicate record ID 'p2'"]),  # cut as str.split cuts
])
def test_embed_refuses_duplicate_or_empty_ids(tmp_path, text, words):
    (tmp_path / "in.faa").write_text(text)
    done = subprocess.run([sys.executable, "-m", "vnp", "embed", "esm2", str(tmp_path / "in.faa"), "-o",
                           str(tmp_path / "x.safetensors"), "--model-size", "tiny", "--cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert all(word in done.stderr for word in words), done.stderr
    assert not (tmp_path / "x.safetensors").exists()
