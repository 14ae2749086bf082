"""Weights: read checkpoints in their published layouts, or make seeded random ones.

Models are built on the meta device in the target dtype and materialised once on the target device,
then filled tensor by tensor from the file (memory-mapped where the format allows) or from a seeded
generator on that device. Every file is checked before anything is copied: a missing, truncated or
mismatched file is one ``WeightsError`` line naming the file and the first bad key or shape.

Layouts read:
- ESM-2: a fair-esm ``.pt`` (``{"model": state_dict, "cfg": ...}``; its pickled config needs
  ``trust_pickle``), a transformers ``EsmForMaskedLM``/``EsmModel`` ``.bin`` or ``.safetensors`` (with or
  without ``esm.``, one rotary ``inv_freq`` per layer, one shared (under any key, even transformers 5.x's
  literal ``encoder.layer.*`` one) or none; LayerNorms as ``weight/bias`` or, as transformers 5.x's
  ``save_pretrained`` writes them, ``gamma/beta``; a file, or a folder with one file or shards and their
  index), or our own names (= fair-esm's).
- DNABERT-S: a transformers folder (``config.json``, ``model.safetensors`` or ``pytorch_model.bin``,
  ``tokenizer.json``), keys with or without ``bert.``, LayerNorms as ``weight/bias`` or ``gamma/beta``.
- Classifier: a state dict (``.pt``/``.pth``, read with ``weights_only=True``) or ``.safetensors``;
  ``convert_classifier`` turns the original pickled ``300_model.pth``/``500_model.pth`` into safetensors.

Why one file of ~460 lines: the three models share the reading, checking and filling machinery (the first
~230 lines); each model's layout rules are short, and splitting them would spread one contract over four files.
"""

from __future__ import annotations

import json
import pickle
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from vnp.atomic import atomic_write
from vnp.errors import WeightsError
from vnp.models.classifier import MLPClassifier
from vnp.models.dnabert import DNABERT, DNABERT_CONFIGS, DNABERTConfig
from vnp.models.esm2 import ESM2, ESM2_CONFIGS, ESM2Config
from vnp.models.tokenizers import load_dnabert_tokenizer

TRUST_HINT = "unpickling can run code stored in the file; pass --trust-pickle only if you trust it"
INIT_STD = 0.02  # BERT-style init for synthetic weights: activations stay in a realistic range


@dataclass
class Loaded:
    model: nn.Module
    synthetic: bool
    source: str | None
    seconds: float


# -- reading files -----------------------------------------------------------------------------
class TensorFile:
    """The tensors of one checkpoint by name; shapes are known before any data is read."""

    def __init__(self, path: Path, shapes: dict[str, tuple[int, ...]], get: Callable[[str], torch.Tensor],
                 meta: dict | None = None):
        self.path, self.shapes, self.get, self.meta = path, shapes, get, meta or {}

    def renamed(self, rename: Callable[[str], list[str]]) -> TensorFile:
        """The same file under new names; ``rename`` gives each key's new names (none: dropped)."""
        names = {}
        for key in self.shapes:
            for new in rename(key):
                names.setdefault(new, key)
        return TensorFile(self.path, {new: self.shapes[old] for new, old in names.items()},
                          lambda new: self.get(names[new]), self.meta)


def read_tensors(path: str | Path, *, trust_pickle: bool = False) -> TensorFile:
    """Open a ``.safetensors`` file lazily, or ``torch.load`` anything else (memory-mapped)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    obj = _torch_load(path, trust_pickle)
    meta = {}
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):  # fair-esm: {"model": ..., "cfg": ...}
        meta = {"cfg": obj.get("cfg")}
        obj = obj["model"]
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return TensorFile(path, {k: tuple(v.shape) for k, v in obj.items()}, obj.__getitem__, meta)


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # a transformers folder's, in preference order


def read_checkpoint(path: str | Path, *, trust_pickle: bool = False) -> TensorFile:
    """A weights file, or a transformers folder: its weights file, or the shards its index lists."""
    path = Path(path)
    if not path.is_dir():
        return read_tensors(path, trust_pickle=trust_pickle)
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return read_tensors(path / name, trust_pickle=trust_pickle)
        if (path / f"{name}.index.json").is_file():
            return _read_shards(path / f"{name}.index.json", trust_pickle)
    raise WeightsError(f"{path}: has no {' or '.join(WEIGHT_FILES)} (nor a sharded index of one)")


def _read_shards(index: Path, trust_pickle: bool) -> TensorFile:
    try:
        shard_names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise WeightsError(f"{index}: not a readable shard index: {_first_line(error)}") from None
    owner: dict[str, TensorFile] = {}
    for name in shard_names:
        shard = read_tensors(index.parent / name, trust_pickle=trust_pickle)
        owner.update(dict.fromkeys(shard.shapes, shard))
    return TensorFile(index, {key: shard.shapes[key] for key, shard in owner.items()},
                      lambda key: owner[key].get(key))


def _read_safetensors(path: Path) -> TensorFile:
    from safetensors import safe_open

    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as error:
        raise WeightsError(f"{path}: not a readable safetensors file (truncated or corrupt?): "
                           f"{_first_line(error)}") from None
    return TensorFile(path, shapes, handle.get_tensor)


def _torch_load(path: Path, trust_pickle: bool, pickle_module=None):
    """``torch.load`` on the CPU: weights only unless trusted; memory-mapped when the format allows."""
    kwargs = {"map_location": "cpu", "weights_only": not trust_pickle}
    if pickle_module is not None:
        kwargs["pickle_module"] = pickle_module
    try:
        try:
            return torch.load(path, mmap=True, **kwargs)
        except RuntimeError as error:
            if "mmap" not in str(error):  # old (non-zip) files cannot be memory-mapped
                raise
            return torch.load(path, **kwargs)
    except pickle.UnpicklingError as error:
        if re.search(r"Unsupported (global|class)", str(error)):  # refused a pickled object, not corrupt
            raise WeightsError(f"{path}: holds pickled Python objects, not only tensors; {TRUST_HINT}") from None
        raise WeightsError(f"{path}: not a readable PyTorch file (truncated or corrupt?): "
                           f"{_first_line(error)}") from None
    except Exception as error:
        raise WeightsError(f"{path}: not a readable PyTorch file (truncated or corrupt?): "
                           f"{_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- filling a model ---------------------------------------------------------------------------
def _build(cls, config, device, dtype) -> nn.Module:
    """Construct without allocating, then allocate once, directly on ``device`` in ``dtype``."""
    return cls(config, device="meta", dtype=dtype).to_empty(device=device)


def _check(model: nn.Module, source: TensorFile, optional: Callable[[str], bool] = lambda key: False,
           label: str = "") -> None:
    """Every tensor of ``model`` present with its shape, nothing unexplained left over."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in source.shapes:
            if optional(key):
                continue
            raise WeightsError(f"{source.path}: missing key {key!r}{label}")
        if source.shapes[key] != tuple(tensor.shape):
            raise WeightsError(f"{source.path}: {key} has shape {list(source.shapes[key])}, "
                               f"expected {list(tensor.shape)}{label}")
    for key in source.shapes:
        if key not in expected:
            raise WeightsError(f"{source.path}: unexpected key {key!r}{label}")


@torch.no_grad()
def _fill(model: nn.Module, source: TensorFile) -> None:
    """Copy (with dtype cast and device transfer) every tensor the file has into the model."""
    for key, target in model.state_dict().items():
        if key in source.shapes:
            target.copy_(source.get(key))


@torch.no_grad()
def random_init_(model: nn.Module, seed: int) -> nn.Module:
    """Seeded random weights of the exact architecture, drawn on the model's own device."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.normal_(0.0, INIT_STD, generator=generator)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm1d)):
            module.weight.fill_(1.0)
            module.bias.zero_()
        if isinstance(module, nn.BatchNorm1d):
            module.reset_running_stats()
        if hasattr(module, "reset_buffers"):  # e.g. the rotary inverse frequencies
            module.reset_buffers()
    return model


def _ready(model: nn.Module, synthetic: bool, source, started: float, device) -> Loaded:
    model.eval().requires_grad_(False)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return Loaded(model, synthetic, None if source is None else str(source), time.perf_counter() - started)


# -- ESM-2 -------------------------------------------------------------------------------------
_HF_ESM_NAMES = [  # transformers EsmModel name (after "esm.") -> fair-esm name
    (r"embeddings\.word_embeddings\.", "embed_tokens."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.query\.", r"layers.\1.self_attn.q_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.key\.", r"layers.\1.self_attn.k_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.value\.", r"layers.\1.self_attn.v_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.rotary_embeddings\.", r"layers.\1.self_attn.rot_emb."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.self_attn.out_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.LayerNorm\.", r"layers.\1.self_attn_layer_norm."),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.fc1."),
    (r"encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.fc2."),
    (r"encoder\.layer\.(\d+)\.LayerNorm\.", r"layers.\1.final_layer_norm."),
    (r"encoder\.emb_layer_norm_after\.", "emb_layer_norm_after."),
]
_ESM_UNUSED = re.compile(r"(lm_head|contact_head|pooler|embeddings\.position_ids)\b")
_HF_LAYER_INV_FREQ = re.compile(r"encoder\.layer\.\d+\.attention\.self\.rotary_embeddings\.inv_freq$")


def _legacy_layer_norm(key: str) -> str:
    """transformers 5.x's ``save_pretrained`` writes ``LayerNorm.weight/bias`` back as ``LayerNorm.gamma/beta``
    (its legacy renaming run in reverse), and reads them back the same way; so do we."""
    return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))


def _esm_names(source: TensorFile) -> TensorFile:
    """Rename any supported ESM-2 layout to fair-esm's names (= ours); drop the heads."""
    hf = any(".attention.self.query." in key for key in source.shapes)
    layers = _esm_layer_count(source.shapes, r"(?:esm\.)?encoder\.layer\.(\d+)\.")

    def rename(key: str) -> list[str]:
        if not hf:
            key = re.sub(r"^(encoder\.sentence_encoder\.|encoder\.)", "", key)  # as fair-esm's loader
            return [] if _ESM_UNUSED.match(key) else [key]
        key = _legacy_layer_norm(key.removeprefix("esm."))
        if key.endswith("rotary_embeddings.inv_freq") and not _HF_LAYER_INV_FREQ.match(key):
            # One inv_freq for all layers: transformers 5.x keep it as `rotary_embeddings.inv_freq`, and their
            # save_pretrained writes it under the literal pattern `encoder.layer.*.attention.self.rotary_...`.
            return [f"layers.{n}.self_attn.rot_emb.inv_freq" for n in range(layers)]
        for pattern, replacement in _HF_ESM_NAMES:
            new, hits = re.subn("^" + pattern, replacement, key)
            if hits:
                return [new]
        return [] if _ESM_UNUSED.match(key) else [key]

    return source.renamed(rename)


def _esm_layer_count(shapes, pattern: str = r"layers\.(\d+)\.") -> int:
    numbers = [int(m.group(1)) for key in shapes if (m := re.match(pattern, key))]
    return max(numbers) + 1 if numbers else 0


def _esm_file_heads(source: TensorFile) -> int | None:
    """Attention heads as the file states them (fair-esm cfg, or a transformers config.json beside it)."""
    cfg = source.meta.get("cfg")
    model_cfg = cfg.get("model") if isinstance(cfg, dict) else None
    heads = (model_cfg.get("encoder_attention_heads") if isinstance(model_cfg, dict)
             else getattr(model_cfg, "encoder_attention_heads", None))
    config_json = source.path.parent / "config.json"
    if heads is None and config_json.is_file():
        try:
            heads = json.loads(config_json.read_text()).get("num_attention_heads")
        except (OSError, ValueError, AttributeError):
            heads = None
    return int(heads) if heads is not None else None


def _esm_shape_heads(source: TensorFile) -> int | None:
    """Attention heads implied by the shapes: a rotary inv_freq holds head_dim / 2 values."""
    inv_freq = source.shapes.get("layers.0.self_attn.rot_emb.inv_freq")
    dim = source.shapes.get("embed_tokens.weight", (0, 0))[1]
    if not inv_freq or not inv_freq[0] or dim % (2 * inv_freq[0]):
        return None
    return dim // (2 * inv_freq[0])


def _esm_config(source: TensorFile, config: str | None) -> ESM2Config:
    """The named configuration (checked against the file), or, for None, the one the file implies: layers and
    width from the shapes, heads as the file states them, else from the rotary shape, else the published table."""
    heads = _esm_file_heads(source)
    if config is not None:
        expected = esm2_config(config)
        if heads is not None and heads != expected.num_heads:
            raise WeightsError(f"{source.path}: has {heads} attention heads, expected {expected.num_heads} "
                               f"({expected.name})")
        return expected
    if "embed_tokens.weight" not in source.shapes:
        raise WeightsError(f"{source.path}: missing key 'embed_tokens.weight'")
    layers, dim = _esm_layer_count(source.shapes), source.shapes["embed_tokens.weight"][1]
    heads = heads if heads is not None else _esm_shape_heads(source)
    for known in ESM2_CONFIGS.values():
        if (known.num_layers, known.embed_dim) == (layers, dim) and heads in (None, known.num_heads):
            return known
    if heads is None:
        raise WeightsError(f"{source.path}: {layers} layers x {dim} is no published ESM-2 and the file does "
                           "not say how many attention heads it has (no config, no rotary inv_freq)")
    return ESM2Config("custom", num_layers=layers, embed_dim=dim, num_heads=heads)


def esm2_config(name: str) -> ESM2Config:
    if name not in ESM2_CONFIGS:
        raise WeightsError(f"unknown ESM-2 configuration {name!r}; known: {', '.join(ESM2_CONFIGS)}")
    return ESM2_CONFIGS[name]


def load_esm2(path: str | None, config: str | None, device, dtype, *, trust_pickle: bool = False,
              seed: int = 0) -> Loaded:
    """ESM-2 from ``path`` (a file or a transformers folder, any supported layout), or for None seeded
    random weights of ``config``. ``config`` None infers the configuration from the file's shapes."""
    started = time.perf_counter()
    if path is None:
        model = random_init_(_build(ESM2, esm2_config(config), device, dtype), seed)
        return _ready(model, True, None, started, device)
    source = _esm_names(read_checkpoint(path, trust_pickle=trust_pickle))
    cfg = _esm_config(source, config)
    model = _build(ESM2, cfg, device, dtype)
    _check(model, source, optional=lambda key: key.endswith("rot_emb.inv_freq"), label=f" ({cfg.name})")
    _fill(model, source)
    for number, layer in enumerate(model.layers):  # no inv_freq in the file: the formula's values
        if f"layers.{number}.self_attn.rot_emb.inv_freq" not in source.shapes:
            layer.self_attn.rot_emb.reset_buffers()
    return _ready(model, False, path, started, device)


# -- DNABERT-S ---------------------------------------------------------------------------------
_DNABERT_NAMES = [  # DNABERT-2 / MosaicBERT name (after "bert.") -> ours
    (r"embeddings\.word_embeddings\.", "word_embeddings."),
    (r"embeddings\.token_type_embeddings\.", "token_type_embeddings."),
    (r"embeddings\.LayerNorm\.", "embed_norm."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.Wqkv\.", r"layers.\1.Wqkv."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attn_out."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"layers.\1.attn_norm."),
    (r"encoder\.layer\.(\d+)\.mlp\.gated_layers\.", r"layers.\1.gated_layers."),
    (r"encoder\.layer\.(\d+)\.mlp\.wo\.", r"layers.\1.wo."),
    (r"encoder\.layer\.(\d+)\.mlp\.layernorm\.", r"layers.\1.mlp_norm."),
]
_DNABERT_UNUSED = re.compile(r"(cls|pooler|embeddings\.position_ids|embeddings\.token_type_ids)\b")
_DNABERT_JSON_FIELDS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
                        "vocab_size", "type_vocab_size", "layer_norm_eps")


def _dnabert_names(key: str) -> list[str]:
    key = _legacy_layer_norm(key.removeprefix("bert."))
    if _DNABERT_UNUSED.match(key):
        return []
    for pattern, replacement in _DNABERT_NAMES:
        new, hits = re.subn("^" + pattern, replacement, key)
        if hits:
            return [new]
    return [key]  # already ours, or unknown (then reported as unexpected)


def dnabert_config(name: str) -> DNABERTConfig:
    if name not in DNABERT_CONFIGS:
        raise WeightsError(f"unknown DNABERT configuration {name!r}; known: {', '.join(DNABERT_CONFIGS)}")
    return DNABERT_CONFIGS[name]


def _dnabert_folder_config(folder: Path, expected: DNABERTConfig) -> DNABERTConfig:
    """``expected``, checked against the folder's config.json where it states a value."""
    path = folder / "config.json"
    if not path.is_file():
        return expected
    try:
        stated = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise WeightsError(f"{path}: not readable JSON: {_first_line(error)}") from None
    for field in _DNABERT_JSON_FIELDS:
        if field in stated and field != "layer_norm_eps" and stated[field] != getattr(expected, field):
            raise WeightsError(f"{path}: {field} is {stated[field]}, expected {getattr(expected, field)} "
                               f"({expected.name})")
    return replace(expected, layer_norm_eps=float(stated.get("layer_norm_eps", expected.layer_norm_eps)))


def load_dnabert(directory: str | None, config: str, device, dtype, *, seed: int = 0):
    """(Loaded, tokenizer): DNABERT-S from a transformers folder, or seeded random weights + stand-in BPE."""
    started = time.perf_counter()
    expected = dnabert_config(config)
    if directory is None:
        model = random_init_(_build(DNABERT, expected, device, dtype), seed)
        return _ready(model, True, None, started, device), load_dnabert_tokenizer(None)
    folder = Path(directory)
    if not folder.is_dir():
        raise WeightsError(f"{folder}: no such folder (expected a DNABERT-S folder with config.json, "
                           "model.safetensors or pytorch_model.bin, and tokenizer.json)")
    cfg = _dnabert_folder_config(folder, expected)
    source = read_checkpoint(folder).renamed(_dnabert_names)
    tokenizer = load_dnabert_tokenizer(folder)
    model = _build(DNABERT, cfg, device, dtype)
    _check(model, source, label=f" ({cfg.name})")
    _fill(model, source)
    return _ready(model, False, folder, started, device), tokenizer


# -- classifier --------------------------------------------------------------------------------
def load_classifier(path: str | None, in_features: int, device, *, seed: int = 0) -> Loaded:
    """The MLP from a state dict or safetensors file, or seeded random weights for None (float32)."""
    started = time.perf_counter()
    if path is None:
        model = random_init_(_build(MLPClassifier, in_features, device, torch.float32), seed)
        return _ready(model, True, None, started, device)
    try:
        source = read_tensors(path)
    except WeightsError as error:
        if TRUST_HINT in str(error):
            raise WeightsError(f"{path}: is a pickled model (like the original 300_model.pth); convert it once "
                               f"with `vnp convert-weights {path} OUT.safetensors --trust`") from None
        raise
    model = _build(MLPClassifier, in_features, device, torch.float32)
    model.bn1.reset_running_stats()  # num_batches_tracked may be absent from the file
    _check(model, source, optional=lambda key: key.endswith("num_batches_tracked"),
           label=f" (classifier on {in_features} features)")
    _fill(model, source)
    return _ready(model, False, path, started, device)


class _OriginalPickle:
    """``pickle_module`` for ``torch.load``: the training script's ``__main__.MLPClassifier`` is ours."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if name == "MLPClassifier":
                return MLPClassifier
            return super().find_class(module, name)

    load = staticmethod(pickle.load)


def convert_classifier(src: str, dst: str, *, trust: bool) -> None:
    """Original pickled classifier (or any state dict) -> safetensors. Unpickles only with ``trust``."""
    if not trust:
        raise WeightsError(f"{src}: converting unpickles the file, which can run code stored in it; "
                           "pass --trust only if you trust it")
    if not Path(src).is_file():
        raise WeightsError(f"{src}: no such file")
    obj = _torch_load(Path(src), True, pickle_module=_OriginalPickle)
    state = obj.state_dict() if isinstance(obj, nn.Module) else obj
    if not isinstance(state, dict) or "hidden_layer.weight" not in state:
        raise WeightsError(f"{src}: not a VirNucPro classifier (no hidden_layer.weight)")
    tensors = {key: value.detach().contiguous() for key, value in state.items()}
    source = TensorFile(Path(src), {k: tuple(v.shape) for k, v in tensors.items()}, tensors.__getitem__)
    in_features = source.shapes["hidden_layer.weight"][1]
    _check(MLPClassifier(in_features, device="meta"), source,
           optional=lambda key: key.endswith("num_batches_tracked"), label=" (classifier)")

    from safetensors.torch import save

    with atomic_write(dst, "wb") as handle:
        handle.write(save(tensors, metadata={"converted_from": Path(src).name}))
