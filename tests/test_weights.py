"""Weight loading: every supported layout round-trips, every broken file gives its one-line error."""

import argparse
import json
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from vnp.errors import WeightsError
from vnp.models.classifier import MLPClassifier
from vnp.models.esm2 import ESM2, ESM2Config
from vnp.models.tokenizers import load_dnabert_tokenizer
from vnp.models.weights import convert_classifier, load_classifier, load_dnabert, load_esm2, random_init_

CPU, F32 = torch.device("cpu"), torch.float32


def perturbed_state(model, seed):
    """The model's tensors with every float one randomised, so a misplaced tensor cannot go unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    return {k: (v + torch.randn(v.shape, generator=generator) * 0.1 if v.is_floating_point()
                and not k.endswith("inv_freq") else v.clone())
            for k, v in model.state_dict().items()}


def assert_same_tensors(model, state):
    got = model.state_dict()
    assert set(got) == set(state)
    for key, value in state.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)


# -- ESM-2 -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def esm_state():
    return perturbed_state(load_esm2(None, "tiny", CPU, F32).model, seed=1)


HF_ESM = [  # ours (= fair-esm) -> transformers EsmForMaskedLM, as transformers' conversion names them
    (r"embed_tokens\.", "embeddings.word_embeddings."),
    (r"layers\.(\d+)\.self_attn\.q_proj\.", r"encoder.layer.\1.attention.self.query."),
    (r"layers\.(\d+)\.self_attn\.k_proj\.", r"encoder.layer.\1.attention.self.key."),
    (r"layers\.(\d+)\.self_attn\.v_proj\.", r"encoder.layer.\1.attention.self.value."),
    (r"layers\.(\d+)\.self_attn\.rot_emb\.", r"encoder.layer.\1.attention.self.rotary_embeddings."),
    (r"layers\.(\d+)\.self_attn\.out_proj\.", r"encoder.layer.\1.attention.output.dense."),
    (r"layers\.(\d+)\.self_attn_layer_norm\.", r"encoder.layer.\1.attention.LayerNorm."),
    (r"layers\.(\d+)\.fc1\.", r"encoder.layer.\1.intermediate.dense."),
    (r"layers\.(\d+)\.fc2\.", r"encoder.layer.\1.output.dense."),
    (r"layers\.(\d+)\.final_layer_norm\.", r"encoder.layer.\1.LayerNorm."),
    (r"emb_layer_norm_after\.", "encoder.emb_layer_norm_after."),
]


def to_hf(state, prefix="esm.", shared_inv_freq=False):
    out = {}
    for key, value in state.items():
        if shared_inv_freq and key.endswith("inv_freq"):
            out[prefix + "rotary_embeddings.inv_freq"] = value
            continue
        for pattern, replacement in HF_ESM:
            key, hits = re.subn("^" + pattern, replacement, key)
            if hits:
                break
        out[prefix + key] = value
    out["lm_head.dense.weight"] = torch.zeros(64, 64)  # heads are present in real files, and ignored
    out[prefix + "contact_head.regression.weight"] = torch.zeros(1, 8)
    return out


def fair_esm_checkpoint(state):
    model = {"encoder.sentence_encoder." + k: v for k, v in state.items()}
    model["encoder.lm_head.bias"] = torch.zeros(33)
    cfg = argparse.Namespace(encoder_layers=2, encoder_embed_dim=64, encoder_attention_heads=4, token_dropout=True)
    return {"model": model, "cfg": {"model": cfg}}


def test_esm_fair_esm_pt_needs_trust(tmp_path, esm_state):
    path = tmp_path / "esm2_tiny.pt"
    torch.save(fair_esm_checkpoint(esm_state), path)
    with pytest.raises(WeightsError, match=r"esm2_tiny\.pt: holds pickled Python objects.*--trust-pickle"):
        load_esm2(str(path), "tiny", CPU, F32)
    loaded = load_esm2(str(path), "tiny", CPU, F32, trust_pickle=True)
    assert not loaded.synthetic and loaded.source == str(path) and loaded.seconds >= 0
    assert_same_tensors(loaded.model, esm_state)
    assert not loaded.model.training


@pytest.mark.parametrize("layout", ["hf-safetensors-shared-inv-freq", "hf-bin-no-prefix", "ours-safetensors"])
def test_esm_layouts_round_trip(tmp_path, esm_state, layout):
    if layout == "hf-safetensors-shared-inv-freq":
        path = tmp_path / "model.safetensors"
        save_file(to_hf(esm_state, shared_inv_freq=True), path)
    elif layout == "hf-bin-no-prefix":
        path = tmp_path / "pytorch_model.bin"
        torch.save(to_hf(esm_state, prefix=""), path)
    else:
        path = tmp_path / "esm2.safetensors"
        save_file(esm_state, path)
    assert_same_tensors(load_esm2(str(path), "tiny", CPU, F32).model, esm_state)


def gamma_beta(key):
    """transformers 5.x's save_pretrained runs its legacy renaming (LayerNorm.gamma -> .weight) in reverse."""
    return re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma", re.sub(r"LayerNorm\.bias$", "LayerNorm.beta", key))


def to_transformers5(state):
    """The key layout transformers 5.x's default save_pretrained writes: LayerNorms as ``LayerNorm.gamma/beta``,
    and the one shared inv_freq under the literal source pattern of its ESM renaming rule, or not at all."""
    return {gamma_beta(key): value for key, value in to_hf(state).items() if not key.endswith("inv_freq")}


@pytest.mark.parametrize("inv_freq", ["literal-pattern-key", "missing"])
def test_esm_transformers5_save_pretrained_layout(tmp_path, esm_state, inv_freq):
    hf = to_transformers5(esm_state)
    assert "esm.encoder.layer.0.attention.LayerNorm.gamma" in hf and "esm.encoder.layer.1.LayerNorm.beta" in hf
    shared = esm_state["layers.0.self_attn.rot_emb.inv_freq"] * 1.001  # fp16-rounded in the real files
    if inv_freq == "literal-pattern-key":
        hf["esm.encoder.layer.*.attention.self.rotary_embeddings.inv_freq"] = shared
    save_file(hf, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": 4}))
    model = load_esm2(str(tmp_path), None, CPU, F32).model
    expected = dict(esm_state)
    if inv_freq == "literal-pattern-key":
        expected.update({k: shared for k in esm_state if k.endswith("inv_freq")})
    assert_same_tensors(model, expected)  # inv_freq absent: the formula's values, as in esm_state


def test_dnabert_transformers5_layer_norm_names(tmp_path, dnabert_state, tokenizer_json):
    folder = dnabert_folder(tmp_path / "d", dnabert_state, tokenizer_json)
    tensors = load_file(folder / "model.safetensors")
    save_file({gamma_beta(key): value for key, value in tensors.items()}, folder / "model.safetensors")
    assert_same_tensors(load_dnabert(str(folder), "tiny", CPU, F32)[0].model, dnabert_state)


CUSTOM_ESM = ESM2Config("custom", num_layers=3, embed_dim=48, num_heads=6)  # no published size, head_dim 8


@pytest.fixture(scope="module")
def custom_esm_state():
    model = ESM2(CUSTOM_ESM, device="meta").to_empty(device="cpu")
    return perturbed_state(random_init_(model, seed=7), seed=8)


@pytest.mark.parametrize("layout", ["ours-with-inv-freq", "hf-config-json"])
def test_esm_custom_size_is_inferred(tmp_path, custom_esm_state, layout):
    if layout == "ours-with-inv-freq":  # heads from the rotary shape: 4 values = head_dim 8 = 6 heads of 48
        path = tmp_path / "esm2.safetensors"
        save_file(custom_esm_state, path)
    else:  # heads stated by config.json; no inv_freq at all
        path = tmp_path
        save_file({k: v for k, v in to_hf(custom_esm_state).items() if "inv_freq" not in k},
                  path / "model.safetensors")
        (path / "config.json").write_text(json.dumps({"num_attention_heads": 6}))
    model = load_esm2(str(path), None, CPU, F32).model
    assert (model.config.num_layers, model.config.embed_dim, model.config.num_heads) == (3, 48, 6)
    assert_same_tensors(model, custom_esm_state)


def test_embed_infers_the_esm_size_from_the_file(tmp_path, custom_esm_state):
    """`vnp embed esm2 --weights FILE` takes any size, not only the one --model-size names."""
    weights = tmp_path / "esm2_custom.safetensors"
    save_file(custom_esm_state, weights)
    fasta = tmp_path / "p.faa"
    fasta.write_text(">p1\nMKTAYIAKQR\n>p2\nGAVLIMFWPSACDE\n")
    out = tmp_path / "emb.safetensors"
    for size in ("tiny", "full"):
        done = subprocess.run([sys.executable, "-m", "vnp", "embed", "esm2", str(fasta), "-o", str(out), "--cpu",
                               "--model-size", size, "--weights", str(weights)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert load_file(out)["embeddings"].shape == (2, 48)


def test_esm_sharded_transformers_folder(tmp_path, esm_state):
    hf = to_hf(esm_state)
    keys = sorted(hf)
    weight_map = {}
    for number, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2:])):
        name = f"model-0000{number + 1}-of-00002.safetensors"
        save_file({k: hf[k] for k in part}, tmp_path / name)
        weight_map.update(dict.fromkeys(part, name))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": 4}))
    assert_same_tensors(load_esm2(str(tmp_path), "tiny", CPU, F32).model, esm_state)
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": 8}))
    with pytest.raises(WeightsError, match=r"has 8 attention heads, expected 4 \(tiny\)"):
        load_esm2(str(tmp_path), "tiny", CPU, F32)


def test_esm_config_is_inferred_from_shapes(tmp_path, esm_state):
    path = tmp_path / "esm2.safetensors"
    save_file(esm_state, path)
    assert load_esm2(str(path), None, CPU, F32).model.config.name == "tiny"


def test_esm_without_inv_freq_uses_the_formula(tmp_path, esm_state):
    path = tmp_path / "esm2.safetensors"
    save_file({k: v for k, v in esm_state.items() if not k.endswith("inv_freq")}, path)
    model = load_esm2(str(path), "tiny", CPU, F32).model
    expected = 1.0 / 10000 ** (torch.arange(0, 16, 2, dtype=torch.float32) / 16)
    torch.testing.assert_close(model.layers[1].self_attn.rot_emb.inv_freq, expected)


def test_esm_bf16_load_keeps_inv_freq_in_float32(tmp_path, esm_state):
    path = tmp_path / "esm2.safetensors"
    save_file(esm_state, path)
    model = load_esm2(str(path), "tiny", CPU, torch.bfloat16).model
    assert model.layers[0].fc1.weight.dtype == torch.bfloat16
    assert model.layers[0].self_attn.rot_emb.inv_freq.dtype == torch.float32


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("layers.1.fc2.weight"), r"missing key 'layers\.1\.fc2\.weight' \(tiny\)"),
    (lambda s: s.update({"layers.0.fc1.bias": torch.zeros(7)}),
     r"layers\.0\.fc1\.bias has shape \[7\], expected \[256\]"),
    (lambda s: s.update({"layers.2.fc1.bias": torch.zeros(256)}), r"unexpected key 'layers\.2\.fc1\.bias'"),
])
def test_esm_mismatched_files(tmp_path, esm_state, damage, message):
    state = dict(esm_state)
    damage(state)
    path = tmp_path / "bad.safetensors"
    save_file(state, path)
    with pytest.raises(WeightsError, match=r"bad\.safetensors: " + message):
        load_esm2(str(path), "tiny", CPU, F32)


def test_esm_file_of_another_size(tmp_path, esm_state):
    path = tmp_path / "tiny.safetensors"
    save_file(esm_state, path)
    expected = r"embed_tokens\.weight has shape \[33, 64\], expected \[33, 320\] \(t6_8M\)"
    with pytest.raises(WeightsError, match=expected):
        load_esm2(str(path), "t6_8M", CPU, F32)


@pytest.mark.parametrize("name, save", [
    ("cut.safetensors", save_file),
    ("cut.pt", lambda state, path: torch.save(state, path)),
])
def test_truncated_files(tmp_path, esm_state, name, save):
    path = tmp_path / name
    save(esm_state, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match=re.escape(name) + r": not a readable .*truncated or corrupt"):
        load_esm2(str(path), "tiny", CPU, F32)


def test_garbage_is_corrupt_not_untrusted(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(WeightsError, match=r"garbage\.pt: not a readable PyTorch file"):
        load_esm2(str(path), "tiny", CPU, F32)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match=r"nothere\.pt: no such file"):
        load_esm2(str(tmp_path / "nothere.pt"), "tiny", CPU, F32)


def test_synthetic_weights_are_seeded():
    first, again, other = (load_esm2(None, "tiny", CPU, F32, seed=s) for s in (3, 3, 4))
    assert first.synthetic and first.source is None
    assert_same_tensors(again.model, first.model.state_dict())
    assert not torch.equal(other.model.layers[0].fc1.weight, first.model.layers[0].fc1.weight)
    expected = 1.0 / 10000 ** (torch.arange(0, 16, 2, dtype=torch.float32) / 16)
    torch.testing.assert_close(first.model.layers[0].self_attn.rot_emb.inv_freq, expected)


# -- DNABERT-S ---------------------------------------------------------------------------------
ORIGINAL_DNABERT = [  # ours -> DNABERT-2 / MosaicBERT names (the published checkpoint's keys)
    (r"word_embeddings\.", "embeddings.word_embeddings."),
    (r"token_type_embeddings\.", "embeddings.token_type_embeddings."),
    (r"embed_norm\.", "embeddings.LayerNorm."),
    (r"layers\.(\d+)\.Wqkv\.", r"encoder.layer.\1.attention.self.Wqkv."),
    (r"layers\.(\d+)\.attn_out\.", r"encoder.layer.\1.attention.output.dense."),
    (r"layers\.(\d+)\.attn_norm\.", r"encoder.layer.\1.attention.output.LayerNorm."),
    (r"layers\.(\d+)\.gated_layers\.", r"encoder.layer.\1.mlp.gated_layers."),
    (r"layers\.(\d+)\.wo\.", r"encoder.layer.\1.mlp.wo."),
    (r"layers\.(\d+)\.mlp_norm\.", r"encoder.layer.\1.mlp.layernorm."),
]
DNABERT_JSON = ('{"num_hidden_layers": 2, "hidden_size": 96, "num_attention_heads": 12, '
                '"intermediate_size": 192, "vocab_size": 4096, "layer_norm_eps": 1e-12}')


@pytest.fixture(scope="module")
def dnabert_state():
    model, _ = load_dnabert(None, "tiny", CPU, F32)
    return perturbed_state(model.model, seed=2)


@pytest.fixture(scope="module")
def tokenizer_json():
    return load_dnabert_tokenizer(None).to_str()  # the cached stand-in


def dnabert_folder(folder, state, tokenizer_json, prefix="bert.", fmt="safetensors"):
    folder.mkdir(exist_ok=True)
    tensors = {}
    for key, value in state.items():
        for pattern, replacement in ORIGINAL_DNABERT:
            key, hits = re.subn("^" + pattern, replacement, key)
            if hits:
                break
        tensors[prefix + key] = value
    tensors["cls.predictions.bias"] = torch.zeros(4096)  # an MLM save: head present, ignored
    tensors[prefix + "pooler.dense.weight"] = torch.zeros(96, 96)
    if fmt == "safetensors":
        save_file(tensors, folder / "model.safetensors")
    else:
        torch.save(tensors, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(DNABERT_JSON)
    (folder / "tokenizer.json").write_text(tokenizer_json)
    return folder


@pytest.mark.parametrize("prefix, fmt", [("bert.", "safetensors"), ("", "bin")])
def test_dnabert_folder_round_trips(tmp_path, dnabert_state, tokenizer_json, prefix, fmt):
    folder = dnabert_folder(tmp_path / "DNABERT-S", dnabert_state, tokenizer_json, prefix, fmt)
    loaded, tokenizer = load_dnabert(str(folder), "tiny", CPU, F32)
    assert not loaded.synthetic and loaded.source == str(folder)
    assert_same_tensors(loaded.model, dnabert_state)
    assert tokenizer.encode("ACGTACGT").ids[0] == 1


def test_dnabert_folder_errors(tmp_path, dnabert_state, tokenizer_json):
    with pytest.raises(WeightsError, match="no such folder"):
        load_dnabert(str(tmp_path / "absent"), "tiny", CPU, F32)
    folder = dnabert_folder(tmp_path / "d", dnabert_state, tokenizer_json)
    (folder / "config.json").write_text(DNABERT_JSON.replace('"hidden_size": 96', '"hidden_size": 768'))
    with pytest.raises(WeightsError, match=r"config\.json: hidden_size is 768, expected 96 \(tiny\)"):
        load_dnabert(str(folder), "tiny", CPU, F32)
    (folder / "config.json").write_text(DNABERT_JSON)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(WeightsError, match=r"tokenizer\.json: cannot read"):
        load_dnabert(str(folder), "tiny", CPU, F32)
    (folder / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match="has no model.safetensors or pytorch_model.bin"):
        load_dnabert(str(folder), "tiny", CPU, F32)


def test_dnabert_missing_layer(tmp_path, dnabert_state, tokenizer_json):
    state = {k: v for k, v in dnabert_state.items() if not k.startswith("layers.1.wo.")}
    folder = dnabert_folder(tmp_path / "d", state, tokenizer_json)
    with pytest.raises(WeightsError, match=r"model\.safetensors: missing key 'layers\.1\.wo\.weight'"):
        load_dnabert(str(folder), "tiny", CPU, F32)


# -- classifier --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classifier_state():
    return perturbed_state(MLPClassifier(160), seed=3)


@pytest.mark.parametrize("name", ["mlp.pt", "mlp.safetensors"])
def test_classifier_round_trips(tmp_path, classifier_state, name):
    path = tmp_path / name
    (save_file if name.endswith("safetensors") else torch.save)(classifier_state, path)
    loaded = load_classifier(str(path), 160, CPU)
    assert_same_tensors(loaded.model, classifier_state)
    with pytest.raises(WeightsError, match=r"hidden_layer\.weight has shape \[512, 160\], expected \[512, 3328\]"):
        load_classifier(str(path), 3328, CPU)


def save_like_the_original(model, path, monkeypatch):
    """torch.save(model) from a training script: the pickle names __main__.MLPClassifier."""

    class OriginalMLP(torch.nn.Module):  # stands for the training script's class
        pass

    OriginalMLP.__module__ = "__main__"
    OriginalMLP.__name__ = OriginalMLP.__qualname__ = "MLPClassifier"
    original = OriginalMLP()
    original.__dict__.update({k: v for k, v in model.__dict__.items() if k != "in_features"})
    monkeypatch.setattr(sys.modules["__main__"], "MLPClassifier", OriginalMLP, raising=False)
    torch.save(original, path)
    monkeypatch.delattr(sys.modules["__main__"], "MLPClassifier")


def test_original_pickled_classifier_converts_only_with_trust(tmp_path, monkeypatch, classifier_state):
    model = MLPClassifier(160)
    model.load_state_dict(classifier_state)
    source, target = tmp_path / "300_model.pth", tmp_path / "300_model.safetensors"
    save_like_the_original(model, source, monkeypatch)
    with pytest.raises(WeightsError, match=r"300_model\.pth: is a pickled model.*vnp convert-weights"):
        load_classifier(str(source), 160, CPU)
    with pytest.raises(WeightsError, match="pass --trust"):
        convert_classifier(str(source), str(target), trust=False)
    assert not target.exists()
    convert_classifier(str(source), str(target), trust=True)
    assert_same_tensors(load_classifier(str(target), 160, CPU).model, classifier_state)


def test_synthetic_classifier():
    loaded = load_classifier(None, 160, CPU, seed=5)
    assert loaded.synthetic and loaded.model.bn1.running_var.eq(1).all()
    assert loaded.model.scores(torch.randn(4, 160)).shape == (4, 2)
