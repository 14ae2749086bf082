"""ESM-2 alphabet encoding, and the DNABERT-S tokenizer: a folder's, or the cached stand-in BPE."""

import numpy as np
import pytest
from tokenizers import Tokenizer

from vnp.errors import InputError, WeightsError
from vnp.models import tokenizers as tk
from vnp.models.tokenizers import build_standin_tokenizer, dnabert_encode, esm_encode, load_dnabert_tokenizer

esm = pytest.importorskip("esm")


def split(flat, lengths):
    return np.split(flat, np.cumsum(lengths)[:-1])


def test_esm_encode_matches_fair_esm():
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    rng = np.random.default_rng(0)
    letters = list("LAGVSERTIDPKQNFYMHWCXBUZO.-")
    proteins = ["".join(rng.choice(letters, n)) for n in (1, 5, 99, 166, 0)]
    tokens, lengths = esm_encode(proteins)
    assert tokens.dtype == np.int64 and lengths.dtype == np.int32
    assert lengths.tolist() == [len(p) + 2 for p in proteins]
    for protein, row in zip(proteins, split(tokens, lengths)):
        expected = [alphabet.cls_idx, *alphabet.encode(protein), alphabet.eos_idx]
        assert row.tolist() == expected


def test_esm_encode_truncates_to_1022_residues():
    tokens, lengths = esm_encode(["M" * 1500, "K" * 10])
    assert lengths.tolist() == [1024, 12]
    first = split(tokens, lengths)[0]
    assert first[0] == tk.ESM_CLS and first[-1] == tk.ESM_EOS and (first[1:-1] == 20).all()


@pytest.mark.parametrize("bad", ["MKJ", "MK*", "mk", "MKé"])
def test_esm_encode_refuses_characters_outside_the_alphabet(bad):
    with pytest.raises(InputError, match="protein 2"):
        esm_encode(["MKL", bad])


def test_esm_encode_empty_batch():
    tokens, lengths = esm_encode([])
    assert len(tokens) == 0 and len(lengths) == 0


@pytest.fixture(scope="module")
def standin():
    return load_dnabert_tokenizer(None)  # built once per machine, then read from the cache


def test_standin_has_dnabert_s_special_ids_and_vocabulary(standin):
    assert standin.get_vocab_size() == 4096
    assert [standin.token_to_id(t) for t in ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")] == [0, 1, 2, 3, 4]


def test_standin_is_identical_every_time_it_is_built():
    small = {"sequences": 200, "length": 500}  # the same recipe on less DNA, to keep the test quick
    first = build_standin_tokenizer(**small)
    assert build_standin_tokenizer(**small).to_str() == first.to_str()
    assert build_standin_tokenizer(seed=1, **small).to_str() != first.to_str()


def test_dnabert_encode_adds_cls_and_sep_and_counts_like_dnabert(standin):
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACGT"), n)) for n in (300, 500, 301, 4)]
    ids, lengths = dnabert_encode(standin, seqs)
    assert ids.dtype == np.int64 and lengths.dtype == np.int32 and len(ids) == lengths.sum()
    for seq, row in zip(seqs, split(ids, lengths)):
        assert row[0] == 1 and row[-1] == 2 and (row[1:-1] > 4).all()
        assert "".join(standin.id_to_token(int(i)) for i in row[1:-1]) == seq
    assert 40 <= lengths[0] <= 80 and 80 <= lengths[1] <= 130  # DNABERT-S BPE: ~64 and ~105 tokens for these lengths
    # encode_batch_fast (no character offsets) gives the ids the usual call gives, with N and lower case too
    seqs += ["ACGTNNACGT" * 30, "acgtacgtnn" * 7]
    ids, lengths = dnabert_encode(standin, seqs)
    assert [list(row) for row in split(ids, lengths)] == [e.ids for e in standin.encode_batch(seqs)]


def test_standin_is_cached_on_disk(tmp_path, monkeypatch, standin):
    builds = []
    monkeypatch.setattr(tk, "build_standin_tokenizer", lambda: builds.append(1) or standin)
    monkeypatch.setenv("VNP_CACHE_DIR", str(tmp_path))
    tk._standin_tokenizer.cache_clear()
    try:
        assert load_dnabert_tokenizer(None).to_str() == standin.to_str()
        (cached,) = tmp_path.glob("dnabert-standin-bpe-*.json")
        tk._standin_tokenizer.cache_clear()
        assert load_dnabert_tokenizer(None).to_str() == standin.to_str()
        assert len(builds) == 1  # the second load read the file
        cached.write_text("{ damaged")
        tk._standin_tokenizer.cache_clear()
        assert load_dnabert_tokenizer(None).to_str() == standin.to_str()
        assert len(builds) == 2  # a damaged cache is rebuilt and rewritten
        assert Tokenizer.from_file(str(cached)).to_str() == standin.to_str()
    finally:
        tk._standin_tokenizer.cache_clear()


def test_folder_tokenizer_gets_cls_sep_when_its_json_lacks_them(tmp_path, standin):
    bare = Tokenizer.from_str(standin.to_str())
    bare.post_processor = None
    bare.enable_truncation(8)  # a saved truncation setting must not shorten inputs
    bare.save(str(tmp_path / "tokenizer.json"))
    loaded = load_dnabert_tokenizer(tmp_path)
    seq = "ACGT" * 50
    assert loaded.encode(seq).ids == standin.encode(seq).ids


def test_folder_without_tokenizer_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="tokenizer.json: cannot read the DNABERT-S tokenizer: no such file"):
        load_dnabert_tokenizer(tmp_path)
