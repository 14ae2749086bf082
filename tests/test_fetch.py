"""`vnp weights fetch` and `vnp predict --weights DIR`, offline: a local server plays the Hugging Face hub
(through HF_ENDPOINT) and VirNucPro's GitHub files (through the documented mirror variable), serving tiny
checkpoints in the published layouts. Fetch, checks, resume after a cut, a wrong checksum, the trusted
conversion, no network, and a predict run on what was fetched."""

import argparse
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.parse
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from conftest import GOLDEN
from safetensors.torch import save
from test_weights import DNABERT_JSON, dnabert_folder, perturbed_state, save_like_the_original, to_hf

from vnp import cli, fetch
from vnp.models.classifier import MLPClassifier
from vnp.models.tokenizers import load_dnabert_tokenizer
from vnp.models.weights import load_dnabert, load_esm2

COMMIT = {"facebook/esm2_t36_3B_UR50D": "1" * 40, "zhihan1996/DNABERT-S": "2" * 40}
LFS = (".safetensors", ".bin", ".h5")


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# -- what the publishers serve: tiny models in the published layouts ---------------------------
def esm_repo() -> dict[str, bytes]:
    """A transformers ESM-2 repository: config, sharded safetensors with their index, and files not needed."""
    state = to_hf(perturbed_state(load_esm2(None, "tiny", torch.device("cpu"), torch.float32).model, seed=11))
    keys = sorted(state)
    shards = {f"model-0000{n + 1}-of-00002.safetensors": keys[n::2] for n in range(2)}
    files = {name: save({k: state[k].contiguous() for k in part}) for name, part in shards.items()}
    weight_map = {key: name for name, part in shards.items() for key in part}
    files["model.safetensors.index.json"] = json.dumps({"metadata": {}, "weight_map": weight_map}).encode()
    files["config.json"] = json.dumps({"model_type": "esm", "num_attention_heads": 4, "hidden_size": 64}).encode()
    files["pytorch_model.bin"] = b"the same weights, pickled: never fetched"
    files["README.md"] = b"# ESM-2\n"
    return files


def dnabert_repo(tmp_path: Path) -> dict[str, bytes]:
    """DNABERT-S: config, a pytorch_model.bin with `bert.` keys, the tokenizer, and its remote code."""
    model, _ = load_dnabert(None, "tiny", torch.device("cpu"), torch.float32)
    tokenizer = load_dnabert_tokenizer(None).to_str()
    folder = dnabert_folder(tmp_path / "dnabert", perturbed_state(model.model, seed=12), tokenizer, fmt="bin")
    files = {path.name: path.read_bytes() for path in folder.iterdir()}
    files["tokenizer_config.json"] = b'{"tokenizer_class": "PreTrainedTokenizerFast"}'
    files["bert_layers.py"] = b"raise SystemExit('remote code is never fetched')\n"
    assert json.loads(files["config.json"]) == json.loads(DNABERT_JSON)
    return files


def classifier_files(tmp_path: Path) -> dict[str, bytes]:
    """300_model.pth and 500_model.pth pickled as the original training script did (tiny: 96 + 64 features)."""
    files = {}
    for seed, name in ((13, "300_model.pth"), (14, "500_model.pth")):
        model = MLPClassifier(160)
        model.load_state_dict(perturbed_state(model, seed=seed))
        with pytest.MonkeyPatch.context() as patch:
            save_like_the_original(model, tmp_path / name, patch)
        files[name] = (tmp_path / name).read_bytes()
    return files


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("published")
    return {"facebook/esm2_t36_3B_UR50D": esm_repo(), "zhihan1996/DNABERT-S": dnabert_repo(tmp),
            "virnucpro": classifier_files(tmp)}


# -- the server --------------------------------------------------------------------------------
class Publisher(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, published):
        super().__init__(("127.0.0.1", 0), Handler)
        self.published = published
        self.lies = {}  # (repo, file) -> a sha256 the listing claims instead of the true one
        self.cut_once = set()  # url paths whose next full GET stops half-way
        self.requests = []  # (method, path, Range header)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def listing(self, repo: str) -> dict:
        siblings = []
        for name, data in self.published[repo].items():
            sibling = {"rfilename": name, "size": len(data), "blobId": git_blob(data)}
            if name.endswith(LFS):
                sha256 = self.lies.get((repo, name)) or hashlib.sha256(data).hexdigest()
                sibling["lfs"] = {"size": len(data), "sha256": sha256, "pointerSize": 134}
            siblings.append(sibling)
        return {"id": repo, "modelId": repo, "sha": COMMIT[repo], "siblings": siblings}


class Handler(BaseHTTPRequestHandler):
    """The few routes huggingface_hub's model_info and hf_hub_download use, and plain files with Range."""

    protocol_version = "HTTP/1.1"
    server: Publisher

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.answer(body=False)

    def do_GET(self):
        self.answer(body=True)

    def answer(self, body: bool):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        self.server.requests.append((self.command, path, self.headers.get("Range")))
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path):
            if match[1] not in COMMIT:
                return self.send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}, body)
            return self.send(200, json.dumps(self.server.listing(match[1])).encode(),
                             {"Content-Type": "application/json"}, body)
        if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            repo, name = match[1], match[3]
            data = self.server.published.get(repo, {}).get(name)
            if data is None or match[2] not in ("main", COMMIT[repo]):
                return self.send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT.get(repo, "")},
                                 body)
            etag = hashlib.sha256(data).hexdigest() if name.endswith(LFS) else git_blob(data)
            return self.send_file(data, {"X-Repo-Commit": COMMIT[repo], "ETag": f'"{etag}"'}, body, path)
        if match := re.fullmatch(r"/virnucpro/([^/]+)", path):
            if (data := self.server.published["virnucpro"].get(match[1])) is not None:
                return self.send_file(data, {}, body, path)
        self.send(404, b"not found", {}, body)

    def send_file(self, data: bytes, headers: dict, body: bool, path: str):
        start = int(re.fullmatch(r"bytes=(\d+)-", self.headers["Range"])[1]) if self.headers.get("Range") else 0
        if start >= len(data) > 0:  # as real servers answer a range past the end
            self.send(416, b"range not satisfiable", {"Content-Range": f"bytes */{len(data)}"}, body)
            return
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if body and not start and path in self.server.cut_once:  # the connection drops half-way, once
            self.server.cut_once.discard(path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send(206 if start else 200, data[start:], headers, body)

    def send(self, status: int, data: bytes, headers: dict, body: bool):
        self.send_response(status)
        for key, value in {"Content-Length": str(len(data)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)


@pytest.fixture
def publisher(published, monkeypatch, tmp_path):
    server = Publisher({repo: dict(files) for repo, files in published.items()})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    for name, value in {"HF_ENDPOINT": server.url, fetch.CLASSIFIER_URL_VARIABLE: f"{server.url}/virnucpro",
                        "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1",
                        "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    # the git blob ids VirNucPro's repository lists, for the tiny stand-ins served here
    monkeypatch.setattr(fetch, "CLASSIFIERS", tuple(
        replace(item, git_blob=git_blob(published["virnucpro"][item.filename])) for item in fetch.CLASSIFIERS))
    yield server
    server.shutdown()
    server.server_close()


def vnp_fetch(dest, *options, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["weights", "fetch", "--dest", str(dest), *options])
    return code, capsys.readouterr().err


def manifest(dest: Path) -> dict:
    return json.loads((dest / "manifest.json").read_text())["weights"]


# -- the tests ---------------------------------------------------------------------------------
def test_fetch_checks_converts_records_and_predict_uses_it(tmp_path, publisher, published, capsys):
    dest = tmp_path / "weights"
    code, err = vnp_fetch(dest, "--trust", capsys=capsys)
    assert code == 0, err
    parts = manifest(dest)
    assert set(parts) == {"esm2", "dnabert", "classifier-300", "classifier-500"}
    esm = parts["esm2"]
    assert esm["revision"] == COMMIT["facebook/esm2_t36_3B_UR50D"]
    assert esm["source"] == f"{publisher.url}/facebook/esm2_t36_3B_UR50D"
    assert [f["name"] for f in esm["files"]] == ["config.json", "model.safetensors.index.json",
                                                 "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    for part, repo in (("esm2", "facebook/esm2_t36_3B_UR50D"), ("dnabert", "zhihan1996/DNABERT-S")):
        for entry in parts[part]["files"]:
            data = published[repo][entry["name"]]
            assert (entry["size"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
            assert entry["checked"] == ["size", "sha256" if entry["name"].endswith(LFS) else "git blob id"]
    assert {f["name"] for f in parts["dnabert"]["files"]} == {"config.json", "tokenizer.json", "tokenizer_config.json",
                                                              "pytorch_model.bin"}
    classifier = parts["classifier-500"]
    assert classifier["revision"] == fetch.VIRNUCPRO_COMMIT and classifier["files"][0]["checked"] == ["git blob id"]
    assert classifier["path"] == "virnucpro/500_model.safetensors" and (dest / classifier["path"]).is_file()
    assert not any(path.name.endswith(".part") for path in dest.rglob("*"))

    out = tmp_path / "out"
    env = {**os.environ, "VNP_CACHE_DIR": str(tmp_path / "no-default-weights")}
    done = subprocess.run([sys.executable, "-m", "vnp", "predict", str(GOLDEN / "public" / "test_with_orfs.fa"),
                           "-o", str(out), "--weights", str(dest), "--model-size", "tiny", "--cpu", "--quiet",
                           "--threads", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "random weights" not in done.stderr
    record = json.loads((out / "run.json").read_text())
    assert record["synthetic_weights"] is False
    assert record["config"]["weights"] == {part: str(dest / entry["path"]) for part, entry in
                                           (("esm2", esm), ("dnabert", parts["dnabert"]), ("classifier", classifier))}


def test_a_cut_download_resumes(tmp_path, publisher, published, capsys):
    dest = tmp_path / "weights"
    shard = f"/facebook/esm2_t36_3B_UR50D/resolve/{'1' * 40}/model-00002-of-00002.safetensors"
    # huggingface_hub writes in 10 MiB chunks: a shard cut after 12 MiB shows its resume (fetch only reads bytes)
    big = publisher.published["facebook/esm2_t36_3B_UR50D"]["model-00002-of-00002.safetensors"] = os.urandom(24 << 20)
    publisher.cut_once = {"/virnucpro/500_model.pth", shard}
    code, err = vnp_fetch(dest, "--only", "esm2", capsys=capsys)
    assert code == 0, err  # huggingface_hub resumed its own transfer, in the same run
    ranges = [r[2] for r in publisher.requests if r[:2] == ("GET", shard)]
    assert ranges[0] is None and 0 < int(re.fullmatch(r"bytes=(\d+)-", ranges[-1])[1]) <= 12 << 20
    snapshot = dest / manifest(dest)["esm2"]["path"]
    assert (snapshot / "model-00002-of-00002.safetensors").read_bytes() == big

    code, err = vnp_fetch(dest, "--only", "classifier-500", capsys=capsys)
    assert code == 3
    assert re.fullmatch(r"vnp: error: could not fetch classifier-500 \(.*500_model\.pth: connection closed after "
                        r"[\d,]+ of [\d,]+ bytes; [\d,]+ bytes kept in .*500_model\.pth\.part, the next fetch "
                        r"resumes there\)", err.strip().splitlines()[-1])
    size = len(published["virnucpro"]["500_model.pth"])
    assert (dest / "virnucpro" / "500_model.pth.part").stat().st_size == size // 2
    assert not (dest / "virnucpro" / "500_model.pth").exists() and set(manifest(dest)) == {"esm2"}

    code, err = vnp_fetch(dest, "--only", "classifier-500", capsys=capsys)
    assert code == 0, err
    assert ("GET", "/virnucpro/500_model.pth", f"bytes={size // 2}-") in publisher.requests
    assert (dest / "virnucpro" / "500_model.pth").read_bytes() == published["virnucpro"]["500_model.pth"]
    assert not (dest / "virnucpro" / "500_model.pth.part").exists()
    assert set(manifest(dest)) == {"esm2", "classifier-500"}


def test_a_wrong_checksum_is_refused_and_not_kept(tmp_path, publisher, published, capsys, monkeypatch):
    dest = tmp_path / "weights"
    repo, shard = "facebook/esm2_t36_3B_UR50D", "model-00001-of-00002.safetensors"
    publisher.lies[(repo, shard)] = "0" * 64  # the listing says one thing, the server sends another
    code, err = vnp_fetch(dest, "--only", "esm2", capsys=capsys)
    assert code == 3
    assert re.fullmatch(rf"vnp: error: could not fetch esm2 \({repo}/{shard}: sha256 [0-9a-f]{{64}} is not the "
                        rf"published 0{{64}}; deleted the file, fetch again .*\)", err.strip().splitlines()[-1])
    served = hashlib.sha256(published[repo][shard]).hexdigest()
    assert not [path for path in dest.rglob("*") if path.name in (served, shard)]  # neither blob nor link
    assert not (dest / "manifest.json").exists()

    item = fetch.CLASSIFIERS[0]
    monkeypatch.setattr(fetch, "CLASSIFIERS", (replace(item, git_blob="f" * 40), *fetch.CLASSIFIERS[1:]))
    code, err = vnp_fetch(dest, "--only", "classifier-300", "--trust", capsys=capsys)
    assert code == 3 and f"300_model.pth: git blob id {git_blob(published['virnucpro']['300_model.pth'])} is not " \
                         f"the published {'f' * 40}; deleted the file" in err
    assert not list((dest / "virnucpro").iterdir()) and not (dest / "manifest.json").exists()


def test_without_trust_the_classifier_is_downloaded_not_unpickled(tmp_path, publisher, capsys):
    dest = tmp_path / "weights"
    code, err = vnp_fetch(dest, "--only", "classifier-300", capsys=capsys)
    assert code == 0, err
    assert "did not convert classifier-300: VirNucPro's classifiers are pickled Python objects, and unpickling " \
           "runs any code stored in them" in err and f"vnp weights fetch --dest {dest} --trust" in err
    assert manifest(dest)["classifier-300"]["path"] is None
    assert (dest / "virnucpro" / "300_model.pth").is_file()
    assert not (dest / "virnucpro" / "300_model.safetensors").exists()

    args = argparse.Namespace(weights=str(dest), model_size="tiny", model_type=300, esm_weights="e.pt",
                              dnabert_dir="d", classifier=None)
    with pytest.raises(fetch.WeightsError, match=rf"{dest}: has no usable classifier-300; get it with "
                                                 rf"`vnp weights fetch --dest {dest} --trust`"):
        fetch.apply_weights_dir(args)

    gets = len(publisher.requests)
    code, err = vnp_fetch(dest, "--only", "classifier-300", "--trust", capsys=capsys)
    assert code == 0, err
    assert publisher.requests[gets:] == []  # checked again, converted, not downloaded again
    assert manifest(dest)["classifier-300"]["path"] == "virnucpro/300_model.safetensors"
    fetch.apply_weights_dir(args)
    assert args.classifier == str(dest / "virnucpro" / "300_model.safetensors")
    assert (args.esm_weights, args.dnabert_dir) == ("e.pt", "d")  # options given on the command line win


def test_no_network_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv(fetch.CLASSIFIER_URL_VARIABLE, f"http://127.0.0.1:{port}/virnucpro")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    dest = tmp_path / "weights"
    code, err = vnp_fetch(dest, "--trust", capsys=capsys)
    assert code == 3
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("vnp: error: could not fetch esm2 (")
    assert all(f"{name} (" in errors[0] for name in fetch.PARTS)
    assert not dest.exists() or not any(dest.rglob("*"))


def test_the_default_folder_serves_full_runs_only_when_complete(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VNP_CACHE_DIR", str(tmp_path))
    paths = {"esm": "hub/esm", "dnabert": "hub/dnabert", "classifier": "virnucpro/500_model.safetensors"}
    for relative in paths.values():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).touch()
    weights = {"esm2": {"path": paths["esm"]}, "dnabert": {"path": paths["dnabert"]},
               "classifier-500": {"path": paths["classifier"]}, "classifier-300": {"path": None}}
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": fetch.SCHEMA, "weights": weights}))

    def resolved(**given):
        args = argparse.Namespace(**{"weights": None, "model_size": "full", "model_type": 500, "esm_weights": None,
                                     "dnabert_dir": None, "classifier": None, **given})
        fetch.apply_weights_dir(args)
        return args.esm_weights, args.dnabert_dir, args.classifier

    assert resolved() == tuple(str(tmp_path / p) for p in paths.values())
    assert resolved(model_size="tiny") == (None, None, None)  # the published weights are the full models
    assert resolved(classifier="mine.safetensors")[2] == "mine.safetensors"
    capsys.readouterr()
    assert resolved(model_type=300) == (None, None, None)  # incomplete: a note, and random weights as before
    assert "not using the fetched weights" in capsys.readouterr().err
    with pytest.raises(fetch.WeightsError, match="no manifest.json"):
        resolved(weights=str(tmp_path / "elsewhere"))


def test_a_foreign_manifest_is_refused_not_replaced(tmp_path, publisher, capsys):
    dest = tmp_path / "weights"
    dest.mkdir()
    (dest / "manifest.json").write_text('{"owner": "another tool"}')
    code, err = vnp_fetch(dest, "--only", "classifier-300", capsys=capsys)
    assert code == 3 and "not a vnp-weights/1 manifest" in err
    assert (dest / "manifest.json").read_text() == '{"owner": "another tool"}'


def test_a_whole_part_file_left_by_a_killed_fetch_does_not_block_the_next(tmp_path, publisher, published, capsys):
    dest = tmp_path / "weights"
    (dest / "virnucpro").mkdir(parents=True)
    whole = published["virnucpro"]["300_model.pth"]
    (dest / "virnucpro" / "300_model.pth.part").write_bytes(whole)  # killed between the last write and the rename
    code, err = vnp_fetch(dest, "--only", "classifier-300", capsys=capsys)
    assert code == 3 and "416" in err  # the server refuses the range past the end: the .part is dropped ...
    code, err = vnp_fetch(dest, "--only", "classifier-300", capsys=capsys)
    assert code == 0, err  # ... and the next fetch starts afresh
    assert (dest / "virnucpro" / "300_model.pth").read_bytes() == whole
