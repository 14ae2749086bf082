"""A real one-node Slurm cluster for tests: munged, slurmctld and slurmd from Debian's packages (22.05), on
localhost, with all their files (configuration, state, spool, logs, munge key and socket) in one directory.

Four fake GPUs make a gpu GRES: links to /dev/null, a character device, which is all slurmd checks. Slurm then
schedules --gpus=N and --gres=gpu:N requests and sets CUDA_VISIBLE_DEVICES for the jobs, as on a GPU node.
No slurmdbd (and no database for it): finished jobs go to the job completion log (JobCompType=jobcomp/filetxt),
which `sacct --completion` reads; plain `sacct` needs slurmdbd.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

COMMANDS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scancel", "scontrol",
            "sacct")
PACKAGES = "munge slurmctld slurmd slurm-client"

SLURM_CONF = """\
ClusterName=vnptest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
# No cgroups in a container: processes are tracked through /proc, tasks are not bound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.txt
MpiDefault=none
ReturnToService=2
# The node is what this file says, whatever the container's hardware looks like to slurmd.
SlurmdParameters=config_overrides
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=2000 Gres=gpu:{gpus} State=UNKNOWN
PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def why_not() -> str | None:
    """Why a cluster cannot start on this machine, in one line; None if it can."""
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    absent = [name for name in COMMANDS if shutil.which(name) is None]
    if absent:
        return f"Slurm is not installed (no {', '.join(absent)}): apt-get install {PACKAGES}"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SlurmCluster:
    def __init__(self, root: Path, gpus: int = 4):
        self.root, self.gpus = root, gpus
        self.node = socket.gethostname().split(".")[0]
        self.daemons: list[subprocess.Popen] = []
        # Snakemake's jobstep runs srun with every SLURM_* variable removed, SLURM_CONF too: on a real node srun
        # finds the configuration in /etc/slurm, here an srun on PATH points the real one at this cluster's.
        self.env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf"),
                    "PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}"}

    def start(self) -> None:
        root = self.root
        for name in ("munge", "state", "spool", "bin", "gpus"):
            (root / name).mkdir(mode=0o755)
        for index in range(self.gpus):
            (root / "gpus" / f"nvidia{index}").symlink_to(os.devnull)
        (root / "gres.conf").write_text(f"Name=gpu File={root}/gpus/nvidia[0-{self.gpus - 1}]\n")
        (root / "slurm.conf").write_text(SLURM_CONF.format(
            root=root, node=self.node, ctld_port=free_port(), slurmd_port=free_port(), cpus=os.cpu_count(),
            gpus=self.gpus))
        srun = root / "bin" / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={root}/slurm.conf exec {shutil.which("srun")} "$@"\n')
        srun.chmod(0o755)

        munge = root / "munge"
        subprocess.run(["mungekey", "--create", f"--keyfile={munge}/munge.key"], check=True, capture_output=True)
        # --force: munged refuses a socket below a directory closed to others, as pytest's temporary ones are.
        self._daemon("munged", "--foreground", "--force", f"--socket={munge}/munge.socket",
                     f"--key-file={munge}/munge.key", f"--pid-file={munge}/munged.pid",
                     f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed")
        self._wait_for(lambda: (munge / "munge.socket").exists(), "munged to open its socket")
        self._daemon("slurmctld", "-D")
        self._daemon("slurmd", "-D", "-N", self.node)
        self._wait_for(self._idle, "the node to be idle")

    def _daemon(self, *command: str) -> None:
        with open(self.root / f"{command[0]}.out", "w") as out:
            self.daemons.append(subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT))

    def _idle(self) -> bool:
        state = self.run("sinfo", "--noheader", "--Node", "--format=%T", check=False).stdout.strip()
        return state == "idle"

    def _wait_for(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            exited = [d.args[0] for d in self.daemons if d.poll() is not None]
            if exited:
                raise RuntimeError(f"slurm cluster: {', '.join(exited)} exited, waiting for {what}; see {self.root}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"slurm cluster: waited {timeout:.0f} s for {what}; see {self.root}")
            time.sleep(0.2)

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        return subprocess.run(command, env=self.env, capture_output=True, text=True, check=check, timeout=60)

    def finished_jobs(self) -> dict[str, str]:
        """Job id -> state of every job that ended, as sacct reads them from the job completion log."""
        out = self.run("sacct", "--completion", "--parsable2", "--noheader", "--format=JobIdRaw,State").stdout
        return dict(line.split("|") for line in out.splitlines())

    def jobs(self) -> dict[str, dict]:
        """Job id -> its fields (JobState, Comment, TresPerJob, ...) as slurmctld knows them: pending, running and
        finished in the last MinJobAge (300 s)."""
        lines = self.run("scontrol", "--oneliner", "show", "job").stdout.splitlines()
        jobs = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in lines if line.startswith("JobId=")]
        return {job["JobId"]: job for job in jobs}

    def queued(self) -> list[str]:
        """Ids of the jobs pending or running."""
        return self.run("squeue", "--noheader", "--format=%i").stdout.split()

    def stop(self) -> None:
        """Cancel every job, then stop the daemons; nothing of the cluster is left running."""
        try:
            if any(d.args[0] == "slurmctld" and d.poll() is None for d in self.daemons):
                self.run("scancel", "--user=root", check=False)
                deadline = time.monotonic() + 30
                while self.queued() and time.monotonic() < deadline:  # slurmstepd ends the jobs' processes
                    time.sleep(0.2)
        finally:
            self._stop_daemons()

    def _stop_daemons(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
