"""The DDP step-time benchmark: ``python -m gradsparse.bench ddp [--quick] [--links
loopback,1gbit,10gbit,veth] [--models resnet18,mlp] [--rounds R] [--steps S] [--json PATH]``.

Two processes on gloo, one torch thread each, train the models of
:mod:`gradsparse.bench.ddp_methods` (CIFAR ResNet-18 with DDP's default buckets, 3 of them;
an MLP with one 42.7 MB bucket) with every method: plain DDP, a no-op hook (the floor: no
communication), torch's bf16 hook, torch's PowerSGD rank 1 (one gloo group per bucket:
on one group it aborts or hangs with several buckets), and gradsparse's top-k hook at 1% and
0.1% with each traffic scheme. All models are built once per process from one
initialisation; then rounds: every method runs ``--steps`` steps per round (after
``--warmup``), the order rotated each round, a barrier before each step; a step is forward +
backward + optimizer step, and the slower rank's time counts. Reported per method: median
step time (p25-p75 over all steps), the round-by-round paired difference to the floor (and
to plain DDP and bf16; median and p25-p75 over rounds), the hook's CPU work alone on the
real (captured) buckets, bytes per step and rank, and whether the parameters are bitwise
identical on both ranks at the end (a difference is an error: exit status 3).

Links: ``loopback`` (127.0.0.1); ``veth`` (two network namespaces gsb0/gsb1 joined by a veth
pair, 10.77.0.1/2, unshaped) and ``<N>gbit``/``<N>mbit`` (the same with ``tc tbf`` at that
rate on both ends). The namespaces need root and iproute2 (``ip``, ``tc``): without them
those links are skipped with the reason printed. The suite creates them and always deletes
them (also on Ctrl-C or SIGTERM). Each link is measured first (gloo all-reduce of 1 KB and
16 MB, or ``gradsparse.integrations.ddp.measure_link`` where it exists), and an alpha-beta
model fed by the measured hook CPU, bytes and link extrapolates to W = 8 and 64 (printed as
"MODEL"; see :mod:`gradsparse.bench.ddp_report`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import gradsparse as gs

from . import ddp_report as rep
from .common import Out, cpu_model, load_avg

NAMESPACES = ("gsb0", "gsb1")
ADDRESSES = ("10.77.0.1", "10.77.0.2")
NETNS_PORT = 29577
RATE = re.compile(r"^(\d+(?:\.\d+)?)(mbit|gbit)$")


def parse_links(text: str) -> List[str]:
    """``loopback``, ``veth`` or a rate such as ``1gbit`` / ``500mbit``, comma-separated."""
    links = [s.strip().lower() for s in text.split(",") if s.strip()]
    for s in links:
        if s not in ("loopback", "veth") and not RATE.match(s):
            raise argparse.ArgumentTypeError(f"--links: {s!r} is not loopback, veth or a rate like 1gbit")
    return links


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def netns_unavailable(shaped: bool) -> Optional[str]:
    """Why the veth links cannot run here (None if they can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (network namespaces and a veth pair)"
    for tool in ("ip",) + (("tc",) if shaped else ()):
        if shutil.which(tool) is None:
            return f"needs iproute2's `{tool}`"
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    taken = [ns for ns in NAMESPACES if ns in listed]
    if taken:
        return (f"network namespace {', '.join(taken)} exists already (left by a killed run?): "
                f"remove it with `ip netns del {taken[0]}`")
    return None


class Veth:
    """Two network namespaces joined by a veth pair, optionally shaped by ``tc tbf`` on both
    ends; torn down on exit from the ``with`` block whatever happened."""

    def __init__(self, rate: Optional[str]) -> None:
        self.rate = rate

    def __enter__(self) -> "Veth":
        try:
            for ns in NAMESPACES:
                _sh("ip", "netns", "add", ns)
            _sh("ip", "link", "add", NAMESPACES[0], "type", "veth", "peer", "name", NAMESPACES[1])
            for ns, addr in zip(NAMESPACES, ADDRESSES):
                _sh("ip", "link", "set", ns, "netns", ns)
                _sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", ns)
                _sh("ip", "-n", ns, "link", "set", ns, "up")
                _sh("ip", "-n", ns, "link", "set", "lo", "up")
                if self.rate:
                    value, unit = RATE.match(self.rate).groups()  # type: ignore[union-attr]
                    bytes_per_s = float(value) * (1e9 if unit == "gbit" else 1e6) / 8
                    burst = max(64 * 1024, int(bytes_per_s * 0.002))  # 2 ms of traffic
                    _sh("tc", "-n", ns, "qdisc", "add", "dev", ns, "root", "tbf", "rate", self.rate,
                        "burst", str(burst), "latency", "50ms")
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.teardown()

    @staticmethod
    def teardown() -> None:
        """Deletes the namespaces (and with them the veth pair) and a pair left in the root
        namespace by a failed setup."""
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        for ns in NAMESPACES:
            if ns in listed:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            if subprocess.run(["ip", "link", "show", ns], capture_output=True).returncode == 0:
                subprocess.run(["ip", "link", "del", ns], capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_pair(link: str, args: argparse.Namespace) -> Dict[str, Any]:
    """Both ranks on `link`; rank 0's JSON results (``{"error": ...}`` if a rank failed)."""
    veth = link != "loopback"
    addr = ADDRESSES[0] if veth else "127.0.0.1"
    port = NETNS_PORT if veth else _free_port()
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(gs.__file__)))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([pkg_root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    with tempfile.TemporaryDirectory(prefix="gs-ddp-") as d:
        result = os.path.join(d, "rank0.json")
        procs: List[subprocess.Popen] = []
        logs = [None, open(os.path.join(d, "rank1.log"), "w+")]
        try:
            for rank in (0, 1):
                cmd = [sys.executable, "-m", "gradsparse.bench.ddp_worker", "--rank", str(rank),
                       "--init", f"tcp://{addr}:{port}", "--models", args.models, "--methods", args.methods,
                       "--rounds", str(args.rounds), "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--cpu-repeats", str(args.cpu_repeats), "--timeout", str(args.timeout)]
                cmd += ["--quick"] if args.quick else []
                cmd += ["--out", result] if rank == 0 else []
                if veth:
                    cmd = ["ip", "netns", "exec", NAMESPACES[rank]] + cmd
                procs.append(subprocess.Popen(cmd, env=dict(env, GLOO_SOCKET_IFNAME=NAMESPACES[rank] if veth else "lo"),
                                              stdout=logs[rank], stderr=subprocess.STDOUT if rank else None))
            while all(p.poll() is None for p in procs):
                time.sleep(0.2)
            bad = [p for p in procs if p.poll() not in (None, 0)]
            if bad:  # one rank failed: the other would wait for it until the timeout
                for p in procs:
                    if p.poll() is None:
                        p.terminate()
            for p in procs:
                p.wait()
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if any(p.returncode != 0 for p in procs):
            logs[1].seek(0)
            tail = "".join(logs[1].readlines()[-15:])
            logs[1].close()
            return {"error": f"rank exit codes {[p.returncode for p in procs]}; rank 1's last lines:\n{tail}"}
        logs[1].close()
        with open(result) as f:
            return json.load(f)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM: leave through the finally blocks that kill the ranks and the namespaces


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m gradsparse.bench ddp``."""
    p = argparse.ArgumentParser(prog="python -m gradsparse.bench ddp",
                                description="DDP step time (2 gloo ranks) of plain DDP, bf16, PowerSGD and "
                                            "gradsparse's hook, paired against a no-op-hook floor.")
    p.add_argument("--quick", action="store_true", help="CI-sized: tiny models, 2 rounds of 2 steps, loopback only")
    p.add_argument("--links", type=parse_links, default=None,
                   help="comma list of loopback, veth (unshaped) and rates like 1gbit,10gbit "
                        "(default loopback,1gbit,10gbit,veth; --quick: loopback)")
    p.add_argument("--models", default="resnet18,mlp", help="comma list of resnet18, mlp")
    p.add_argument("--methods", default="",
                   help="comma list of method names or prefixes (e.g. plain,bf16,gs-0.1%%); default all")
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 6, --quick 2)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per method and round (default 4, --quick 2)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per method first (at least 3)")
    p.add_argument("--cpu-repeats", type=int, default=None, help="samples of each hook's CPU work (default 7, --quick 2)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds a collective may wait before a rank fails")
    p.add_argument("--json", default="bench-results/ddp.json", metavar="PATH", help="where to write the results")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the suite; 0 on success, 2 if a run failed, 3 if parameters differ across ranks."""
    args = build_parser().parse_args(argv)
    args.links = args.links or (["loopback"] if args.quick else ["loopback", "1gbit", "10gbit", "veth"])
    args.rounds = args.rounds or (2 if args.quick else 6)
    args.steps = args.steps or (2 if args.quick else 4)
    args.cpu_repeats = args.cpu_repeats or (2 if args.quick else 7)
    unknown = [m for m in args.models.split(",") if m not in ("resnet18", "mlp")]
    if unknown or args.rounds < 1 or args.steps < 1 or args.warmup < 3:
        raise SystemExit("--models: resnet18, mlp; --rounds, --steps >= 1; --warmup >= 3")
    out = Out()
    out(f"gradsparse {gs.config()['version']} DDP step-time bench | 2 ranks, gloo, 1 torch thread each | "
        f"rounds {args.rounds} x steps {args.steps} per method, warm-up {args.warmup} | cpu {cpu_model()} "
        f"({os.cpu_count()} logical) | load avg {load_avg()}")
    out("step = forward + backward + optimizer step (the slower rank's), barrier before each; +floor = paired "
        "difference to the no-op hook in the same round (median [p25..p75] over rounds); -plain / -bf16 the same "
        "against plain DDP / bf16")
    out("bf16 = torch's bf16_compress_hook (called through a function of another name: DDP refuses the name on CPU); "
        "PowerSGD = torch's powerSGD_hook, rank 1, from iteration 2, with ONE GLOO PROCESS GROUP PER BUCKET (on one "
        "group its all-reduce chains of several buckets interleave differently on the ranks: abort or hang)")
    out("hook CPU = the hook's CPU work per step alone on the captured buckets, no communication (rank 0): plain = "
        "the division, bf16 = casts + division, PowerSGD = torch's hook on a one-rank group, gradsparse = "
        "gradsparse.integrations.ddp.local_pass; e+=g = one read of g, one read + write of e (the floor of the "
        "fused pass)")
    results: Dict[str, Any] = {"meta": {"timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                                        "platform": platform.platform(), "cpu": cpu_model(),
                                        "argv": list(argv) if argv is not None else sys.argv[1:]},
                               "links": {}}
    status = 0
    old = signal.signal(signal.SIGTERM, _interrupt)
    try:
        for link in args.links:
            out()
            desc = ("127.0.0.1 on lo, unshaped" if link == "loopback" else
                    f"veth {NAMESPACES[0]}/{NAMESPACES[1]} ({ADDRESSES[0]}/{ADDRESSES[1]}) in two network namespaces, "
                    + (f"tc tbf rate {link} on both ends" if link != "veth" else "unshaped"))
            out(f"== link {link}: {desc}")
            why = None if link == "loopback" else netns_unavailable(shaped=link != "veth")
            if why:
                out(f"   SKIPPED: {why}")
                results["links"][link] = {"skipped": why}
                continue
            if link == "loopback":
                res = run_pair(link, args)
            else:
                try:
                    with Veth(None if link == "veth" else link):
                        res = run_pair(link, args)
                except subprocess.CalledProcessError as exc:
                    why = f"network setup failed: {' '.join(exc.cmd)}: {exc.stderr.strip()}"
                    out(f"   SKIPPED: {why}")
                    results["links"][link] = {"skipped": why}
                    continue
            results["links"][link] = res
            if "error" in res:
                out(f"   ERROR: {res['error']}")
                status = 2
                continue
            out(f"   {rep.link_line(res['link'])}")
            res["summary"], res["model"] = {}, {}
            for name, model in res["models"].items():
                res["summary"][name] = rep.print_model_table(out, name, model)
                res["model"][name] = rep.print_model(out, name, model, res["link"])
                if any(m["params"].startswith("DIFFER") for m in model["methods"].values()):
                    out(f"   ERROR: parameters differ across ranks on {name}")
                    status = max(status, 3)
    except KeyboardInterrupt:
        out("interrupted: the network namespaces were removed")
        status = 130
    finally:
        signal.signal(signal.SIGTERM, old)
    results["status"] = status
    results["printed"] = out.lines
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        out(f"\nJSON: {args.json}")
    return status
