"""Runs Flower's processes (SuperLink, SuperNodes, the `flwr` CLI) for tests, on 127.0.0.1
only, and stops every one of them afterwards.

Stopping the SuperLink does not stop what it started: `flower-superexec` runs in its own
session, Ray's daemons and actors in theirs, and the ServerApp/ClientApp processes are
children of those. So every process a :class:`FlowerProcesses` starts gets a unique token in
its environment, which its descendants inherit; :meth:`FlowerProcesses.close` signals the
process groups it started, then every process whose environment holds the token (scanning
/proc/*/environ), first SIGTERM then SIGKILL, and reports what is left (nothing, or the test
fails).

Nothing here imports flwr: the test process only runs Flower's command-line programs.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence

TOKEN_VAR = "GRADSPARSE_FLOWER_TEST_TOKEN"

#: Flower and Ray: no telemetry, no update checks, no dependency installs, loopback only
QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_DEDUP_LOGS": "0", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flower_bin(name: str) -> str:
    """The path of Flower's program `name` installed beside this Python, or ''."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.access(path, os.X_OK) else ""


def pids_with_token(token: str) -> List[int]:
    """Live (non-zombie) processes whose initial environment holds ``TOKEN_VAR=token``."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle not in fh.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state not in (b"Z", b"X"):
            found.append(int(entry))
    return found


class FlowerProcesses:
    """Flower processes of one test, under `workdir` (FLWR_HOME and logs there; RAY_TMPDIR
    in a short folder of its own, removed by :meth:`close`).

    Use as a context manager; :attr:`leftovers` lists the processes that survived
    :meth:`close` (command lines), which the test must assert empty."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.token = uuid.uuid4().hex
        self.home = self.workdir / "flwr-home"
        self.home.mkdir(parents=True)
        # Ray's socket paths (RAY_TMPDIR/ray/session_<date>_<pid>/sockets/plasma_store) must
        # stay under 108 bytes: a short folder of its own, not one under a long tmp_path
        self.ray_tmp = tempfile.mkdtemp(prefix="gs-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        self.env = {**os.environ, **QUIET_ENV, "PATH": path, "FLWR_HOME": str(self.home),
                    "RAY_TMPDIR": self.ray_tmp, TOKEN_VAR: self.token}
        self.procs: Dict[str, subprocess.Popen] = {}
        self.leftovers: List[str] = []

    def __enter__(self) -> "FlowerProcesses":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ starting
    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start(self, name: str, argv: Sequence[str]) -> subprocess.Popen:
        """Starts `argv` in a new session, output to `<name>.log`."""
        with open(self.log(name), "wb") as out:
            proc = subprocess.Popen(list(argv), env=self.env, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[name] = proc
        return proc

    def cli(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
        """Runs the `flwr` CLI to completion (bounded by `timeout`), output captured."""
        proc = subprocess.Popen([flower_bin("flwr"), *argv], env=self.env, cwd=self.workdir, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise AssertionError(f"flwr {' '.join(argv)} did not finish in {timeout} s:\n{out.decode(errors='replace')}")
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(errors="replace"), "")

    def add_connection(self, name: str, port: int) -> None:
        """Writes a SuperLink connection `name` (127.0.0.1:`port`, insecure) to FLWR_HOME's
        config.toml -- the `flwr` CLI then never starts its own local SuperLink."""
        config = self.home / "config.toml"
        text = config.read_text() if config.exists() else ""
        config.write_text(text + f'\n[superlink.{name}]\naddress = "127.0.0.1:{port}"\ninsecure = true\n')

    def wait_healthy(self, name: str, port: int, deadline: float) -> None:
        """Waits until the SuperLink `name` started answers on /health."""
        while True:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not healthy on 127.0.0.1:{port} in time:\n{self.tail(name)}")
            time.sleep(0.2)

    def tail(self, name: str, lines: int = 40) -> str:
        try:
            text = self.log(name).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def logs(self) -> str:
        """The tails of every log, for a failure message."""
        return "\n".join(f"--- {name}.log\n{self.tail(name)}" for name in self.procs)

    # ------------------------------------------------------------------ runs
    def run_app(self, app: Path, connection: str, run_config: Dict[str, object], timeout: float,
                federation_config: Optional[str] = None) -> int:
        """`flwr run` of `app` (not streamed); the run id."""
        pairs = " ".join(f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in run_config.items())
        argv = ["run", str(app), connection, "--format", "json", "--run-config", pairs]
        if federation_config:
            argv += ["--federation-config", federation_config]
        res = self.cli(argv, timeout)
        try:
            out = json.loads(res.stdout[res.stdout.index("{"):])
            return int(out["run-id"])
        except (ValueError, KeyError, TypeError):
            raise AssertionError(f"flwr run failed ({res.returncode}):\n{res.stdout}") from None

    def run_status(self, run_id: int, connection: str, timeout: float = 30) -> str:
        """The run's status text (e.g. 'running', 'finished:completed'), or '' if unknown."""
        res = self.cli(["ls", connection, "--run-id", str(run_id), "--format", "json"], timeout)
        try:
            runs = json.loads(res.stdout[res.stdout.index("{"):])["runs"]
            return str(runs[0]["status"]) if runs else ""
        except (ValueError, KeyError, TypeError, IndexError):
            return ""

    def stop_run(self, run_id: int, connection: str) -> str:
        """Best effort: `flwr stop` of the run unless it has finished (killing the CLI leaves a
        run going on the SuperLink); the run's last known status."""
        try:
            status = self.run_status(run_id, connection)
            if not status.startswith("finished"):
                self.cli(["stop", str(run_id), connection], timeout=60)
                status = self.run_status(run_id, connection)
        except AssertionError:  # the CLI timed out: close() stops everything anyway
            status = ""
        return status

    def wait_for_file(self, path: Path, run_id: int, connection: str, deadline: float, watch: Sequence[str]) -> dict:
        """Waits for the JSON file `path`; fails early if the run finishes without writing
        it or a process in `watch` exits, and at `deadline`."""
        last_status_check = time.monotonic()
        while True:
            if path.exists():
                return json.loads(path.read_text())
            for name in watch:
                if self.procs[name].poll() is not None:
                    raise AssertionError(f"{name} exited with {self.procs[name].returncode}\n{self.logs()}")
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(f"run {run_id}: no {path.name} before the deadline\n{self.logs()}")
            if now - last_status_check > 10:  # a finished run that wrote nothing: fail now
                last_status_check = now
                status = self.run_status(run_id, connection)
                if status.startswith("finished") and not path.exists():
                    log = self.cli(["log", str(run_id), connection, "--show"], 30).stdout
                    raise AssertionError(f"run {run_id} ended ({status}) without {path.name}:\n{log[-4000:]}")
            time.sleep(0.5)

    # ------------------------------------------------------------------ stopping
    def close(self, grace: float = 10.0) -> None:
        """Stops everything: the process groups started here, then every process carrying
        the token (SIGTERM, then SIGKILL after `grace` s); sets :attr:`leftovers`."""
        for proc in self.procs.values():
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
        _signal_pids(pids_with_token(self.token), signal.SIGTERM)
        end = time.monotonic() + grace
        while pids_with_token(self.token) and time.monotonic() < end:
            time.sleep(0.2)
        for proc in self.procs.values():
            if proc.poll() is None:  # not reaped, so its pid (= its group's id) is still its own
                _signal_group(proc.pid, signal.SIGKILL)
        for _ in range(50):  # a process may fork while being killed: repeat until none is left
            pids = pids_with_token(self.token)
            if not pids:
                break
            _signal_pids(pids, signal.SIGKILL)
            time.sleep(0.1)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.leftovers = [_cmdline(p) for p in pids_with_token(self.token)]
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


def _signal_group(pgid: int, sig: int) -> None:
    """Signals process group `pgid` (a session leader started here and not yet reaped),
    never the test's own."""
    if pgid == os.getpgrp():
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_pids(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return f"{pid}: " + fh.read().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return f"{pid}: (gone)"
