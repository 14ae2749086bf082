#!/usr/bin/env python3
"""A dashboard that opens with no internet: asv publish's pages with their scripts and styles served from html/.

    python scripts/dashboard.py fetch [DIR]        # setup time: npm pack the exact packages into DIR
    python scripts/dashboard.py localize HTML_DIR  # after `asv publish`: copy them into HTML_DIR/vendor/

asv 0.6.6's index.html loads jQuery, flot and its plugins, stupidtable, blueimp-md5 and Bootstrap from public
CDNs. `fetch` takes the same versions from the npm registry as package tarballs (like every other
dependency, at setup or wheelhouse time; none is kept in this repository) and checks each against its
sha512; `localize` unpacks the files the page needs into HTML_DIR/vendor/ and points every CDN reference
there. A CDN reference it does not know (a newer asv) is an error, not a page that silently goes online.
The tarballs are looked for in DIR, $VNP_DASHBOARD_VENDOR, .asv/dashboard-vendor and .whl/npm.

Exit codes: 0 done, 1 a tarball is missing or does not match, or the page has an unknown CDN reference.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENDOR = REPO / ".asv" / "dashboard-vendor"
# npm tarball -> its sha512 (npm's `integrity`). flot 0.8.3 on npm ships the plugins unminified (the same
# code as the CDN's .min.js); stupidtable 1.0.1 is not on npm: 1.1.3 is its npm release, same API.
PACKAGES = {
    "jquery-3.3.1.tgz":
        "Ubldcmxp5np52/ENotGxlLe6aGMvmF4R8S6tZjsP6Knsaxd/xp3Zrh50cG93lR6nPXyUFwzN3ZSOQI0wRJNdGg==",
    "flot-0.8.3.tgz":
        "xg2otcTJDvS+ERK+my4wxG/ASq90QURXtoM4LhacCq0jQW2jbyjdttbRNqU2cPykrpMvJ6b2uSp6SAgYAzj9tQ==",
    "flot-orderbars-1.0.0.tgz":
        "Jv51fvzevUjNXEeozpwEKfPjhiZhfiJddv0WHjduUTCmSF+7T5K7C9c9Y1wIVmUhDBv5fLMjgbwKecT0GIKPZA==",
    "stupid-table-plugin-1.1.3.tgz":
        "2Vk7XouQPxUQPRe9w0Fu7ZZ8kHLK7rDoLMsCgtKxRNJ7f4dSOGvW9CkHsq5wD6QsaEnWoyLBYH3xOEsrK3yWBg==",
    "blueimp-md5-2.19.0.tgz":
        "DRQrD6gJyy8FbiE4s+bDoXS9hiW3Vbx5uCdwvcCf3zLHL+Iv7LtGHLpr+GZV8rHG8tK766FGYBwRbu8pELTt+w==",
    "bootstrap-3.1.1.tgz":
        "TAzqS8E/ISpVHP29gYhy+1NSV+FJwApDVQhDfgLYsIuUDJiqJzH2DfORN5tiu+Ie2iBLrzEG34t4Rf465cigqg==",
}
# CDN address in asv's page -> (tarball, file in it). Bootstrap's CSS finds its fonts at ../fonts/.
CDN = {
    "https://code.jquery.com/jquery-3.3.1.min.js": ("jquery-3.3.1.tgz", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": ("flot-0.8.3.tgz", "jquery.flot.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js":
        ("flot-0.8.3.tgz", "jquery.flot.time.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js":
        ("flot-0.8.3.tgz", "jquery.flot.selection.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js":
        ("flot-0.8.3.tgz", "jquery.flot.categories.js"),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js":
        ("flot-orderbars-1.0.0.tgz", "js/jquery.flot.orderBars.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js":
        ("stupid-table-plugin-1.1.3.tgz", "stupidtable.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js":
        ("blueimp-md5-2.19.0.tgz", "js/md5.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js":
        ("bootstrap-3.1.1.tgz", "dist/js/bootstrap.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css":
        ("bootstrap-3.1.1.tgz", "dist/css/bootstrap.min.css"),
}
ALSO = {"bootstrap-3.1.1.tgz": "dist/fonts/"}  # files the CSS loads by relative address
REFERENCE = re.compile(r'(?P<attr>src|href)="(?P<url>https?://[^"]+)"(?P<rest>[^>]*)>')


class DashboardError(Exception):
    pass


def sha512(path: Path) -> str:
    return base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def vendor_dirs(given: Path | None) -> list[Path]:
    dirs = [given, os.environ.get("VNP_DASHBOARD_VENDOR"), DEFAULT_VENDOR, REPO / ".whl" / "npm"]
    return [Path(d) for d in dirs if d]


def tarball(name: str, dirs: list[Path]) -> Path:
    """The checked tarball `name` from the first directory that has it."""
    for directory in dirs:
        path = directory / name
        if path.exists():
            if sha512(path) != PACKAGES[name]:
                raise DashboardError(f"{path}: sha512 differs from npm's {name}")
            return path
    raise DashboardError(f"{name} not found in {', '.join(map(str, dirs))}: run `scripts/dashboard.py fetch` "
                         "where the npm registry is reachable (scripts/setup.sh, gpu_host.sh wheelhouse)")


def fetch(directory: Path) -> None:
    """npm pack every package into `directory` (skipping those already there and intact)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in PACKAGES:
        path = directory / name
        if path.exists() and sha512(path) == PACKAGES[name]:
            continue
        spec = re.sub(r"-(\d[\w.]*)\.tgz$", r"@\1", name)
        subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(directory), spec], check=True,
                       stdout=subprocess.DEVNULL)
        tarball(name, [directory])
    print(f"dashboard: {len(PACKAGES)} npm packages in {directory}")


def localize(html: Path, dirs: list[Path]) -> int:
    """Unpack the page's scripts and styles into html/vendor/ and point the page at them; count of references."""
    index = html / "index.html"
    page = index.read_text()
    unknown = sorted({m["url"] for m in REFERENCE.finditer(page) if m["url"] not in CDN and _loaded(m)})
    if unknown:
        raise DashboardError(f"{index}: no offline copy of {', '.join(unknown)}")
    for name in sorted({package for package, _ in CDN.values()}):
        wanted = {member for package, member in CDN.values() if package == name}
        with tarfile.open(tarball(name, dirs)) as archive:
            for member in archive.getmembers():
                inner = member.name.removeprefix("package/")
                if member.isfile() and (inner in wanted or inner.startswith(ALSO.get(name, "\0"))):
                    target = html / "vendor" / name.removesuffix(".tgz") / inner
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.extractfile(member).read())

    def local(match: re.Match) -> str:
        if match["url"] not in CDN:
            return match[0]
        package, member = CDN[match["url"]]
        # integrity named the CDN's file (minified by the CDN); the copy is npm's, checked by its tarball's sha512
        rest = re.sub(r'\s(integrity|crossorigin|referrerpolicy)="[^"]*"', "", match["rest"])
        return f'{match["attr"]}="vendor/{package.removesuffix(".tgz")}/{member}"{rest}>'

    page, count = REFERENCE.subn(local, page)
    index.write_text(page)
    return count


def _loaded(match: re.Match) -> bool:
    """A script or stylesheet the page loads (not a plain link, such as asv's home page)."""
    return match["attr"] == "src" or match["url"].endswith((".css", ".js"))


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] not in ("fetch", "localize") or (argv[0] == "localize" and len(argv) < 2):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        if argv[0] == "fetch":
            fetch(Path(argv[1]) if len(argv) > 1 else DEFAULT_VENDOR)
        else:
            html = Path(argv[1])
            localize(html, vendor_dirs(Path(argv[2]) if len(argv) > 2 else None))
            print(f"dashboard: {html}/index.html loads its scripts and styles from {html}/vendor/")
    except (DashboardError, OSError, subprocess.CalledProcessError) as error:
        print(f"dashboard: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
