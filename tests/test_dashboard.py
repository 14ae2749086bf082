"""The published dashboard opens with no internet: served from 127.0.0.1, loaded in headless Chromium.

The committed GPU results are published with `asv publish` into tmp, made offline by scripts/dashboard.py,
served by a local HTTP server and loaded in Chromium with every host name but 127.0.0.1 unresolvable.
Chromium's network log then lists every request: the page's must all go to 127.0.0.1. The page as asv
publishes it is loaded the same way first: its graph must fail, or the check proves nothing.
"""

import contextlib
import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BENCHMARK = "end_to_end.EndToEnd.track_wall_seconds"  # has H200 points in the committed results
# Chromium's own services (updates, accounts) that it contacts whatever the page does.
CHROMIUM_OWN = re.compile(r"(^|\.)(google\.com|googleapis\.com|gvt1\.com)$")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (CI installs it: scripts/setup.sh)")


def publish(tmp_path: Path) -> Path:
    """asv publish of the committed results into tmp (asv works in its configuration's directory)."""
    config = json.loads((REPO / "asv.conf.json").read_text())
    config.update(repo=str(REPO), benchmark_dir=str(REPO / "benchmarks"), env_dir=str(REPO / ".asv" / "env"),
                  results_dir=str(REPO / "results"), html_dir=str(tmp_path / "html"))
    (tmp_path / "asv.conf.json").write_text(json.dumps(config))
    for name in ("asv_plugins", "pyproject.toml"):
        (tmp_path / name).symlink_to(REPO / name)
    done = subprocess.run([sys.executable, "-m", "asv", "--config", str(tmp_path / "asv.conf.json"), "publish"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Skipping results" not in done.stdout + done.stderr  # RunRecords no longer live in results/
    return tmp_path / "html"


@contextlib.contextmanager
def served(directory: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def load(url: str, net_log: Path) -> str:
    """The page's DOM after its scripts ran, with no host but 127.0.0.1 resolvable; requests go to net_log."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
             f"--log-net-log={net_log}", "--virtual-time-budget=15000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def requested_hosts(net_log: Path) -> set[str]:
    hosts = set(re.findall(r'"url":"https?://([^/:"]+)', net_log.read_text()))
    return {host for host in hosts if not CHROMIUM_OWN.search(host)}


@pytest.mark.slow
def test_the_dashboard_renders_a_graph_offline(tmp_path):
    html = publish(tmp_path)
    stock = tmp_path / "stock"
    shutil.copytree(html, stock)
    with served(stock) as base:
        page = load(f"{base}/index.html#{BENCHMARK}", tmp_path / "stock-net.json")
    assert "flot-base" not in page and "failed to load" in page  # as asv publishes it: CDNs, no graph
    assert requested_hosts(tmp_path / "stock-net.json") - {"127.0.0.1"}  # ... and it tried to go out

    done = subprocess.run([sys.executable, str(REPO / "scripts" / "dashboard.py"), "localize", str(html)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with served(html) as base:
        page = load(f"{base}/index.html#{BENCHMARK}", tmp_path / "net.json")
    assert "failed to load" not in page
    assert page.count('class="flot-base"') >= 1  # flot drew the benchmark's graph
    assert requested_hosts(tmp_path / "net.json") == {"127.0.0.1"}
