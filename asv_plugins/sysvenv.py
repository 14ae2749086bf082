"""asv environment `sysvenv`: a venv that sees every package of the Python running asv.

GPU hosts keep torch and CUDA in their system Python and are often offline, so the per-commit
environments must not install torch: each is a standard-library `venv --system-site-packages` made from
the interpreter that runs asv, and when that interpreter is itself a virtual environment (a CI
`.venv`, a bench venv made on the GPU host) its site-packages are appended to the new environment's
path too. Only the project is installed per commit, with the offline build and install commands of
asv.conf.json (`--no-deps --no-build-isolation --no-index`); the commit's `vnp` shadows any other copy
because the environment's own site-packages come first on the path.

asv finds the class by its `tool_name` once this module is imported ("plugins": [".asv_plugins.sysvenv"]).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from asv import environment, util
from asv.console import log
from asv.plugins.virtualenv import Virtualenv

PARENT_PTH = "_asv_sysvenv_parent.pth"
PIP_SHIM = '#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n'


class SystemSiteVenv(Virtualenv):
    tool_name = "sysvenv"

    def __init__(self, conf, python, requirements, tagged_env_vars):
        # Virtualenv.__init__ insists on the virtualenv package; this environment needs only `venv`.
        self._executable = self._find_python(python)
        if self._executable is None:
            raise environment.EnvironmentUnavailable(f"No executable found for python {python}")
        self._python = python
        self._requirements = requirements
        environment.Environment.__init__(self, conf, python, requirements, tagged_env_vars)

    @staticmethod
    def _find_python(python):
        """The interpreter running asv when its version matches: that is the one with torch."""
        if python in (f"{sys.version_info[0]}.{sys.version_info[1]}", str(sys.version_info[0])):
            return sys.executable
        return Virtualenv._find_python(python)

    @classmethod
    def matches(cls, python):
        return bool(re.match(r"^[0-9]", python)) and cls._find_python(python) is not None

    def _setup(self):
        log.info(f"Creating venv with system site-packages for {self.name}")
        # The host's own pip (and setuptools, wheel) when it has one: ensurepip would bundle older copies
        # that shadow the host's and make an offline host fetch newer ones.
        own_pip = not _succeeds([self._executable, "-c", "import pip"])
        util.check_call([self._executable, "-m", "venv", "--system-site-packages",
                         *([] if own_pip else ["--without-pip"]), self._path])
        parents = json.loads(util.check_output([self._executable, "-c", (
            "import json, sys; print(json.dumps([p for p in sys.path if p.endswith(('site-packages', "
            "'dist-packages'))] if sys.prefix != sys.base_prefix else []))")]))
        purelib = util.check_output([os.path.join(self._path, "bin", "python"), "-c",
                                     "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
        if parents:
            # Every site-packages on the parent's path, including those a .pth of the parent adds (a bench
            # venv over the H200 image's /opt/torch/.venv); plain paths, so an editable vnp's .pth stays out.
            Path(purelib, PARENT_PTH).write_text("".join(f"{p}\n" for p in parents))
        pip = Path(self._path, "bin", "pip")
        if not pip.exists():  # the pip of the system or parent site-packages, run by this environment
            pip.write_text(PIP_SHIM)
            pip.chmod(0o755)
        log.info(f"Installing requirements for {self.name}")
        self._install_requirements()

    def _install_requirements(self):
        """asv's base requirements and the matrix's in one pip call, without `--upgrade` and without
        Virtualenv's forced `pip install wheel pip`: what the host already has is "already satisfied",
        so an offline host needs a wheelhouse (PIP_NO_INDEX=1 PIP_FIND_LINKS=...) only for what it lacks."""
        args = []
        for key, val in {**self._requirements, **self._base_requirements}.items():
            parsed = util.ParsedPipDeclaration(f"{key[4:] if key.startswith('pip+') else key} {val}".strip())
            args += [*parsed.flags, parsed.path or f"{parsed.pkgname}{parsed.specification or ''}"]
        if args:
            self._run_pip(["install", *args], env={**os.environ, **self.build_env_vars})


def _succeeds(command) -> bool:
    try:
        util.check_call(command, display_error=False)
    except util.ProcessError:
        return False
    return True
