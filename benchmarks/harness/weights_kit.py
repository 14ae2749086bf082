"""One set of seeded random weights, written once in every format the three programs load.

VirNucPro's programs take their models from fixed places: the original and the Broad fork call fair-esm's
`esm2_t36_3B_UR50D()` (a checkpoint in torch hub's cache), transformers' `AutoModel.from_pretrained(
"zhihan1996/DNABERT-S", trust_remote_code=True)` (a Hugging Face cache entry with the model's own code) and
`torch.load` of a pickled classifier module; vnp reads files it is given. A kit is a folder holding the same
tensors in all of these, so the three programs compute on identical weights offline:

    KIT/torch/hub/checkpoints/esm2_t36_3B_UR50D.pt                 fair-esm checkpoint ({"model", "cfg"})
    KIT/torch/hub/checkpoints/esm2_t36_3B_UR50D-contact-regression.pt
    KIT/hf/hub/models--zhihan1996--DNABERT-S/snapshots/<rev>/      config.json (auto_map), the model code,
                                                                   tokenizer files, model.safetensors
    KIT/classifier/{300,500}_model.pth                             the original's pickled MLPClassifier
    KIT/classifier/{300,500}_model.safetensors                     the same tensors for vnp
    KIT/kit.json                                                   what was written, and with what

`TORCH_HOME=KIT/torch HF_HOME=KIT/hf HF_HUB_OFFLINE=1` (`Kit.environment()`) points the programs there.

Sizes: `full` is the published architectures (ESM-2 3B: 36 layers x 2560; DNABERT-S: 12 x 768). `small`
keeps every name and the 36 layers the original hard-codes (`repr_layers=[36]`) with a narrow ESM-2
(36 x 64, 4 heads), so all three programs run on a CPU in seconds; DNABERT-S stays full-size (its shape
is fixed by the folder's config, and 117M parameters are cheap).

DNABERT-S's model code (bert_layers.py, bert_padding.py, configuration_bert.py, from its Hugging Face
repository) is copied from a folder the user names: this repository does not ship it. Its Triton kernel file
is replaced by one whose import fails, which is the model's own fallback to PyTorch attention (what runs
on any machine without Triton). Its real tokenizer is not available offline: the kit trains a BPE of the
same kind (4,096 pieces, the same special tokens and ids) on seeded random DNA.

Names and shapes come from the libraries (fair-esm's `ESM2` built on the meta device) or from the
published layouts; values from a seeded generator, tensor by tensor, so a kit is the same on every host.
Nothing here imports vnp.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ESM_NAME = "esm2_t36_3B_UR50D"
DNABERT_REPO = "zhihan1996/DNABERT-S"
DNABERT_CODE = ("bert_layers.py", "bert_padding.py", "configuration_bert.py")
MODEL_TYPES = (300, 500)
INIT_STD = 0.02  # BERT-style: activations stay in a realistic range through 36 layers
KIT_VERSION = 1
# The cache entry's revision (refs/main points at it): transformers takes a snapshot's folder name for a commit
# id and refuses remote code from one that is not 40 hex digits.
MARKER = ".vnp-weights-kit"  # what makes a folder this module's to replace
SNAPSHOT = hashlib.sha1(f"vnp weights kit v{KIT_VERSION}".encode()).hexdigest()

# (layers, width, heads) of ESM-2 per size; the original reads layer 36, so every size has 36.
ESM_SHAPES = {"full": (36, 2560, 40), "small": (36, 64, 4)}
DNABERT_CONFIG = {  # DNABERT-S's published config.json, less what only training uses
    "architectures": ["BertModel"], "model_type": "bert", "vocab_size": 4096, "hidden_size": 768,
    "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 512,
    "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
    "position_embedding_type": "absolute", "alibi_starting_size": 512, "torch_dtype": "float32",
    "auto_map": {"AutoConfig": "configuration_bert.BertConfig", "AutoModel": "bert_layers.BertModel",
                 "AutoModelForMaskedLM": "bert_layers.BertForMaskedLM"},
}
DNABERT_SPECIALS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")  # ids 0..4, as DNABERT-S has them
CLASSIFIER_HIDDEN = 512  # the original's training script: MLPClassifier(input_dim, 512, 2)
FAILING_TRITON_FILE = (
    '"""Stand-in for DNABERT-S\'s Triton attention kernel, which the kit does not have: its import fails, so\n'
    'bert_layers.py takes its own fallback, PyTorch attention (as on any machine without Triton)."""\n\n'
    'raise ImportError("the weights kit ships no Triton kernel for DNABERT-S")\n'
)


class KitError(Exception):
    """The kit cannot be written or read; the message says why in one line."""


@dataclass(frozen=True)
class Kit:
    root: Path
    size: str
    seed: int
    esm_shape: tuple

    @classmethod
    def open(cls, root: str | Path) -> Kit:
        root = Path(root)
        try:
            meta = json.loads((root / "kit.json").read_text())
        except (OSError, ValueError) as error:
            raise KitError(f"{root}: not a weights kit (no readable kit.json: {error})") from None
        if meta.get("version") != KIT_VERSION:
            raise KitError(f"{root}: kit version {meta.get('version')}, expected {KIT_VERSION}: write it again")
        return cls(root, meta["size"], meta["seed"], tuple(meta["esm_shape"]))

    @property
    def esm_checkpoint(self) -> Path:
        return self.root / "torch" / "hub" / "checkpoints" / f"{ESM_NAME}.pt"

    @property
    def dnabert_dir(self) -> Path:
        return self.root / "hf" / "hub" / f"models--{DNABERT_REPO.replace('/', '--')}" / "snapshots" / SNAPSHOT

    def classifier(self, model_type: int, pickled: bool = True) -> Path:
        return self.root / "classifier" / f"{model_type}_model.{'pth' if pickled else 'safetensors'}"

    def environment(self) -> dict:
        """Where fair-esm and transformers look, and no network: what the original and the fork need."""
        return {"TORCH_HOME": str(self.root / "torch"), "HF_HOME": str(self.root / "hf"), "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}

    def vnp_options(self, model_type: int) -> dict:
        """vnp predict's weight options (semantic, for targets.Target.argv) for these files."""
        return {"esm_weights": str(self.esm_checkpoint), "trust_pickle": True,
                "dnabert_dir": str(self.dnabert_dir), "classifier": str(self.classifier(model_type, pickled=False))}


# -- writing -------------------------------------------------------------------------------------
def write(root: str | Path, size: str = "full", seed: int = 0, dnabert_code: str | Path | None = None) -> Kit:
    """Write a kit into `root` (made anew: an existing kit there is replaced only once the new one is whole)."""
    if size not in ESM_SHAPES:
        raise KitError(f"unknown kit size {size!r}; expected one of {', '.join(ESM_SHAPES)}")
    if importlib.util.find_spec("esm") is None:  # a lent GPU host's bench venv once lacked it
        raise KitError("the weights kit takes ESM-2's checkpoint layout from fair-esm: pip install fair-esm==2.0.0")
    code = _dnabert_code_dir(dnabert_code)
    root = Path(root)
    building = root.with_name(root.name + ".partial")
    for folder in (root, building):  # replaced only if it is a kit (or the start of one): never a user's folder
        if folder.exists() and any(folder.iterdir()) and not (folder / MARKER).exists():
            raise KitError(f"{folder} exists and is not a weights kit: name a new folder (or an old kit)")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    (building / MARKER).write_text("a weights kit (benchmarks/harness/weights_kit.py) is written here\n")
    layers, width, heads = ESM_SHAPES[size]
    kit = Kit(building, size, seed, (layers, width, heads))
    _write_esm(kit)
    _write_dnabert(kit, code)
    for model_type in MODEL_TYPES:
        _write_classifier(kit, model_type, DNABERT_CONFIG["hidden_size"] + width)
    meta = {"version": KIT_VERSION, "size": size, "seed": seed, "esm_shape": [layers, width, heads],
            "dnabert_code": {name: _sha256(code / name) for name in DNABERT_CODE},
            "files": {str(p.relative_to(building)): p.stat().st_size for p in sorted(building.rglob("*"))
                      if p.is_file()}}
    (building / "kit.json").write_text(json.dumps(meta, indent=1) + "\n")
    if root.exists():
        shutil.rmtree(root)
    building.rename(root)
    return Kit.open(root)


def _dnabert_code_dir(given: str | Path | None) -> Path:
    folder = given or os.environ.get("VNP_PEER_DNABERT_CODE")
    if not folder:
        raise KitError("DNABERT-S's model code is needed (bert_layers.py, bert_padding.py, configuration_bert.py "
                       "from its Hugging Face repository): pass --dnabert-code DIR or set VNP_PEER_DNABERT_CODE")
    missing = [name for name in DNABERT_CODE if not (Path(folder) / name).is_file()]
    if missing:
        raise KitError(f"{folder}: has no {', '.join(missing)} (DNABERT-S's model code)")
    return Path(folder)


def seeded_tensor(shape, dtype, seed: int, key: str, kind: str, std: float = INIT_STD):
    """One tensor's values from (seed, name): normal(0, std) weights, zero biases, unit norm scales. Drawn on
    the CPU, whose generator gives the same numbers on every host (a 3B model takes about half a minute)."""
    import torch

    if kind == "zeros":
        return torch.zeros(shape, dtype=dtype)
    if kind == "ones":
        return torch.ones(shape, dtype=dtype)
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return torch.empty(shape, dtype=torch.float32).normal_(0.0, std, generator=generator).to(dtype)


def _kind(key: str, shape: tuple) -> str:
    """How a parameter is initialised, by its name and shape (the same rule for every model)."""
    norm = any(part in key for part in ("layer_norm", "LayerNorm", "layernorm", "emb_layer_norm"))
    if norm:
        return "ones" if key.endswith("weight") else "zeros"
    if len(shape) == 1:
        return "zeros"  # biases
    return "normal"


def _write_esm(kit: Kit) -> None:
    """A fair-esm checkpoint: fp16 tensors (as published) under `encoder.`, cfg as an argparse.Namespace."""
    import torch
    from esm.data import Alphabet
    from esm.model.esm2 import ESM2

    layers, width, heads = kit.esm_shape
    with torch.device("meta"):  # names and shapes only: a 3B model's own init would take minutes
        model = ESM2(num_layers=layers, embed_dim=width, attention_heads=heads,
                     alphabet=Alphabet.from_architecture("ESM-1b"), token_dropout=True)
    state, regression = {}, {}
    for key, tensor in model.state_dict().items():
        if key.endswith("rot_emb.inv_freq"):  # the rotary frequencies are a formula, not weights
            value = 1.0 / (10000 ** (torch.arange(0, width // heads, 2, dtype=torch.float32) / (width // heads)))
            value = value.half()
        else:
            value = seeded_tensor(tuple(tensor.shape), torch.float16, kit.seed, f"esm2.{key}",
                                  _kind(key, tuple(tensor.shape)))
        if key == "lm_head.weight":  # the LM head's decoder is the token embedding (tied)
            value = state["encoder.embed_tokens.weight"]
        if key.startswith("contact_head."):
            regression[key] = value
        else:
            state[f"encoder.{key}"] = value
    cfg = argparse.Namespace(encoder_layers=layers, encoder_embed_dim=width, encoder_attention_heads=heads,
                             token_dropout=True, arch="ESM2")
    folder = kit.esm_checkpoint.parent
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "cfg": {"model": cfg}}, kit.esm_checkpoint)
    torch.save({"model": regression}, folder / f"{ESM_NAME}-contact-regression.pt")


def dnabert_state_shapes() -> dict[str, tuple]:
    """DNABERT-S's parameters as its published checkpoint names them (`bert.` + MosaicBERT layout)."""
    c = DNABERT_CONFIG
    hidden, ffn = c["hidden_size"], c["intermediate_size"]
    shapes = {"bert.embeddings.word_embeddings.weight": (c["vocab_size"], hidden),
              "bert.embeddings.token_type_embeddings.weight": (c["type_vocab_size"], hidden),
              "bert.embeddings.LayerNorm.weight": (hidden,), "bert.embeddings.LayerNorm.bias": (hidden,)}
    per_layer = {"attention.self.Wqkv.weight": (3 * hidden, hidden), "attention.self.Wqkv.bias": (3 * hidden,),
                 "attention.output.dense.weight": (hidden, hidden), "attention.output.dense.bias": (hidden,),
                 "attention.output.LayerNorm.weight": (hidden,), "attention.output.LayerNorm.bias": (hidden,),
                 "mlp.gated_layers.weight": (2 * ffn, hidden),  # gated GELU: one GEMM, no bias
                 "mlp.wo.weight": (hidden, ffn), "mlp.wo.bias": (hidden,),
                 "mlp.layernorm.weight": (hidden,), "mlp.layernorm.bias": (hidden,)}
    for i in range(c["num_hidden_layers"]):
        shapes.update({f"bert.encoder.layer.{i}.{name}": shape for name, shape in per_layer.items()})
    shapes.update({"bert.pooler.dense.weight": (hidden, hidden), "bert.pooler.dense.bias": (hidden,)})
    return shapes


def _write_dnabert(kit: Kit, code: Path) -> None:
    """A Hugging Face cache entry for zhihan1996/DNABERT-S that transformers loads with HF_HUB_OFFLINE=1."""
    import torch
    from safetensors.torch import save_file

    snapshot = kit.dnabert_dir
    snapshot.mkdir(parents=True, exist_ok=True)
    refs = snapshot.parent.parent / "refs"
    refs.mkdir(exist_ok=True)
    (refs / "main").write_text(SNAPSHOT)
    for name in DNABERT_CODE:
        shutil.copyfile(code / name, snapshot / name)
    (snapshot / "flash_attn_triton.py").write_text(FAILING_TRITON_FILE)
    (snapshot / "config.json").write_text(json.dumps(DNABERT_CONFIG, indent=1) + "\n")
    tensors = {key: seeded_tensor(shape, torch.float32, kit.seed, f"dnabert.{key}", _kind(key, shape))
               for key, shape in dnabert_state_shapes().items()}
    save_file(tensors, str(snapshot / "model.safetensors"), metadata={"format": "pt"})  # transformers wants "pt"
    _write_tokenizer(snapshot, kit.seed)


def _write_tokenizer(snapshot: Path, seed: int) -> None:
    """A BPE of DNABERT-S's kind: 4,096 pieces, [UNK] [CLS] [SEP] [PAD] [MASK] as ids 0-4, [CLS] ... [SEP]."""
    import numpy as np
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    rng = np.random.default_rng(seed)
    texts = ["".join(rng.choice(list("ACGT"), size=800)) for _ in range(2500)]
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=DNABERT_CONFIG["vocab_size"], special_tokens=list(DNABERT_SPECIALS),
        initial_alphabet=list("ACGTN"), show_progress=False))
    ids = {token: tokenizer.token_to_id(token) for token in DNABERT_SPECIALS}
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    (snapshot / "tokenizer.json").write_text(json.dumps(_legacy_merges(json.loads(tokenizer.to_str()))))
    specials = {"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                "mask_token": "[MASK]"}
    (snapshot / "special_tokens_map.json").write_text(json.dumps(specials, indent=1) + "\n")
    (snapshot / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512, **specials}, indent=1) + "\n")


def _legacy_merges(tokenizer: dict) -> dict:
    """Merges as "a b" strings: tokenizers before 0.20 (the original's pin, 0.13) cannot read the pairs that
    newer versions write, and every version reads the strings."""
    model = tokenizer["model"]
    model["merges"] = [" ".join(pair) if isinstance(pair, list) else pair for pair in model["merges"]]
    model.pop("ignore_merges", None)
    return tokenizer


def classifier_state(in_features: int, seed: int, model_type: int) -> dict:
    """The MLP's tensors: Linear(in, 512) - BatchNorm1d(512) - ReLU - Linear(512, 2), as the original trains it
    (Xavier-scaled weights), with BatchNorm statistics that are not the identity."""
    import torch

    def tensor(key, shape, std):
        return seeded_tensor(shape, torch.float32, seed, f"classifier{model_type}.{key}", "normal", std)

    def xavier(key, fan_out, fan_in):
        return tensor(key, (fan_out, fan_in), (2.0 / (fan_in + fan_out)) ** 0.5)

    hidden = CLASSIFIER_HIDDEN
    # The ReLU outputs share a large common part; output weights centred over the hidden units leave the two
    # scores to what differs between frames, so that calls go both ways (random rows gave one label for all).
    output = xavier("output_layer.weight", 2, hidden)
    output -= output.mean(dim=1, keepdim=True)
    return {"hidden_layer.weight": xavier("hidden_layer.weight", hidden, in_features),
            "hidden_layer.bias": tensor("hidden_layer.bias", (hidden,), 0.01),
            "bn1.weight": 1 + tensor("bn1.weight", (hidden,), 0.1), "bn1.bias": tensor("bn1.bias", (hidden,), 0.1),
            "bn1.running_mean": tensor("bn1.running_mean", (hidden,), 0.1),
            "bn1.running_var": 0.5 + tensor("bn1.running_var", (hidden,), 0.1).abs(),
            "bn1.num_batches_tracked": torch.tensor(1000, dtype=torch.int64),
            "output_layer.weight": output,
            "output_layer.bias": tensor("output_layer.bias", (2,), 0.01)}


def _write_classifier(kit: Kit, model_type: int, in_features: int) -> None:
    """The original pickles the whole module (`torch.save(model)`, class `__main__.MLPClassifier`) and
    `prediction.py`, run as a script, defines that class in its own `__main__`; vnp reads safetensors."""
    import torch
    from safetensors.torch import save_file

    state = classifier_state(in_features, kit.seed, model_type)
    folder = kit.classifier(model_type).parent
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(kit.classifier(model_type, pickled=False)))
    module = _pickled_classifier_class()(in_features, CLASSIFIER_HIDDEN, 2)
    module.load_state_dict(state)
    main = sys.modules["__main__"]
    had, previous = hasattr(main, "MLPClassifier"), getattr(main, "MLPClassifier", None)
    main.MLPClassifier = type(module)  # pickle refers to a class by module and name, and checks it is this one
    try:
        torch.save(module.eval(), kit.classifier(model_type))
    finally:
        if had:
            main.MLPClassifier = previous
        else:
            del main.MLPClassifier


def _pickled_classifier_class():
    """The original's classifier as a class named `__main__.MLPClassifier` (attribute names are its layout)."""
    from torch import nn

    class MLPClassifier(nn.Module):
        def __init__(self, input_dim, hidden_dim, num_class):
            super().__init__()
            self.hidden_layer = nn.Linear(input_dim, hidden_dim)
            self.bn1 = nn.BatchNorm1d(hidden_dim)
            self.output_layer = nn.Linear(hidden_dim, num_class)
            self.dropout = nn.Dropout(0.5)

    MLPClassifier.__module__, MLPClassifier.__qualname__ = "__main__", "MLPClassifier"
    return MLPClassifier


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
