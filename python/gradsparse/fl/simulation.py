"""The FedAvg simulation: clients, compressed uplink with error feedback, server, records,
atomic checkpoints and exact resume. The ``evofed`` method's round is
:mod:`gradsparse.fl.evofed_round` (it reuses the clients' local training, the sampling,
the evaluation, the records and the checkpoints here)."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
from torch import nn

from . import checkpoint as ckpt
from . import evofed_params
from . import records as rec
from .records import CONFIG, EXPERIMENT, STATUS, read_json as _read_json  # noqa: F401  (the old names)
from ..compress import Compressor, ErrorFeedback, feedback_enabled, make_compressor
from .config import DATA_SHAPES, Config
from .data import ImageSet, load_cifar10, load_fmnist, synthetic
from .energy import client_account, load_profile, tensor_costs
from .models import build_model, forward_flops
from .partition import label_histograms, partition, validation_split
from ..errors import ArgumentError

__all__ = ["run", "Simulation"]

CHECKPOINT = "checkpoint.pt"


def _seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (run seed, round, client, purpose)."""
    # int() before the shift: numpy 1.x has no uint64 >> Python int (it promotes to float64)
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]) >> 1


_atomic_write = ckpt.atomic_write


def default_threads() -> int:
    """torch threads when the config leaves them at 0: cores - 1, at least 1, at most 4."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def _progress(cfg: Config):
    """tqdm when enabled (and installed), else None."""
    on = cfg.progress == "on" or (cfg.progress == "auto" and sys.stderr.isatty())
    if not on:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class Simulation:
    """One federated run. ``Simulation(cfg).run()`` trains, records and checkpoints."""

    def __init__(self, cfg: Config, *, log: Callable[[str], None] = print):
        self.cfg = cfg.validate()
        self.log = log
        self.dir = cfg.run_dir()
        self.evofed = None  # the evofed protocol (gradsparse.fl.evofed_round), made with the model
        if cfg.method == evofed_params.METHOD:
            self.uplink: Optional[Compressor] = None
            self.method_params = evofed_params.resolve(cfg.params)
            self.ef = False  # error feedback does not apply (Config.validate refuses "on")
        else:
            self.uplink = make_compressor(cfg.method, cfg.params)
            self.method_params = self.uplink.settings()
            self.ef = feedback_enabled(self.uplink, cfg.error_feedback)
        self.downlink: Optional[Compressor] = (None if cfg.downlink == "none" and not cfg.downlink_params
                                               else make_compressor(cfg.downlink, cfg.downlink_params))
        self.down_ef = self.downlink is not None and feedback_enabled(self.downlink, "auto")
        self.profile = load_profile(cfg.energy_profile, cfg.energy_overrides)
        # the device of each client (a population of profiles, assigned round robin)
        names = cfg.client_profiles or [cfg.energy_profile]
        self.profiles = {n: load_profile(n, cfg.energy_overrides) for n in names}
        self.client_profile = [names[c % len(names)] for c in range(cfg.num_clients)]

    # ------------------------------------------------------------------ setup
    def _load_data(self) -> None:
        cfg = self.cfg
        if cfg.data == "synthetic":
            tx, ty, vx, vy = synthetic(cfg.synthetic_train, cfg.synthetic_test, cfg.seed)
        elif cfg.data == "fmnist":
            tx, ty, vx, vy = load_fmnist(cfg.data_dir, cfg.download)
        else:
            tx, ty, vx, vy = load_cifar10(cfg.data_dir, cfg.download)
        if cfg.train_limit:
            tx, ty = tx[:cfg.train_limit], ty[:cfg.train_limit]
        if cfg.test_limit:
            vx, vy = vx[:cfg.test_limit], vy[:cfg.test_limit]
        self.data_id = {"train_sha256": _sha256(tx, ty), "test_sha256": _sha256(vx, vy)}
        pseed = cfg.seed if cfg.partition_seed < 0 else cfg.partition_seed
        keep, held = validation_split(ty, cfg.val_fraction, pseed)
        self.train = ImageSet.for_source(cfg.data, tx[keep], ty[keep], cfg.normalize)
        self.val = ImageSet.for_source(cfg.data, tx[held], ty[held], cfg.normalize) if held.size else None
        self.test = ImageSet.for_source(cfg.data, vx, vy, cfg.normalize)
        ty = ty[keep]
        self.parts = partition(cfg.partition, ty, cfg.num_clients, alpha=cfg.alpha, min_size=cfg.min_partition_size,
                               shards_per_client=cfg.shards_per_client, seed=pseed)
        self.hist = label_histograms(ty, self.parts)
        self.data_id.update(train=int(keep.size), val=int(held.size), test=int(vy.size))

    def _build(self) -> None:
        cfg = self.cfg
        torch.manual_seed(_seed(cfg.seed, 0x30DE1))
        shape = DATA_SHAPES[cfg.data]
        self.model = build_model(cfg.model, in_channels=shape[0])
        self.worker = build_model(cfg.model, in_channels=shape[0])
        self.param_names = [n for n, _ in self.model.named_parameters()]
        sd = self.model.state_dict()
        # float buffers (BatchNorm statistics) are averaged and sent dense
        self.buffer_names = [n for n in sd if n not in self.param_names and sd[n].is_floating_point()]
        self.shapes = OrderedDict((n, tuple(sd[n].shape)) for n in self.param_names)
        sizes = OrderedDict((n, int(np.prod(s))) for n, s in self.shapes.items())
        self.sizes = sizes
        self.costs_of = {name: tensor_costs(sizes, prof) for name, prof in self.profiles.items()}
        self.costs = tensor_costs(sizes, self.profile)
        self.cost_per_tensor = {n: c.total for n, c in self.costs.items()}
        self.cost_per_tensor_of = {name: {n: c.total for n, c in cs.items()} for name, cs in self.costs_of.items()}
        self.flops_per_sample = 3 * forward_flops(self.model, (1,) + shape)  # forward + backward ~ 3x forward
        self.dim = sum(sizes.values())
        # decoding target: names and shapes of the parameters
        self.like = OrderedDict((n, np.zeros(s, np.float32)) for n, s in self.shapes.items())
        # Dense float32 messages have a size fixed by names and shapes: the whole model (dense
        # downlink) and the BatchNorm statistics (sent beside every compressed update).
        self.model_bytes = _dense_size({k: v for k, v in sd.items() if v.is_floating_point()})
        self.buffer_bytes = _dense_size({k: sd[k] for k in self.buffer_names}) if self.buffer_names else 0
        if cfg.method == evofed_params.METHOD:
            from .evofed_round import EvofedRound
            # the population's seed: derived from the run seed (every party knows it)
            self.evofed = EvofedRound(self, seed=_seed(cfg.seed, 0xE70FED))

    def _fresh_state(self) -> Dict[str, Any]:
        zeros = {n: torch.zeros(self.shapes[n]) for n in self.param_names}
        # "feedback": client -> its ErrorFeedback (made on its first round with error feedback)
        st: Dict[str, Any] = {"round": 0, "server_momentum": zeros, "feedback": {}, "totals": rec.zero_totals()}
        if self.downlink is not None:
            st["broadcast"] = {n: t.detach().clone() for n, t in self.model.state_dict().items()}
            st["down_feedback"] = ErrorFeedback()
        return st

    # ------------------------------------------------------------------ checkpoint
    def _save(self, st: Dict[str, Any]) -> None:
        import io
        blob = {"round": st["round"], "model": self.model.state_dict(), "server_momentum": st["server_momentum"],
                "residuals": {str(c): _residuals(ef) for c, ef in st["feedback"].items()}, "totals": dict(st["totals"]),
                "torch_rng": torch.get_rng_state()}
        if self.downlink is not None:
            blob["broadcast"] = st["broadcast"]
            blob["down_residual"] = _residuals(st["down_feedback"])
        if self.evofed is not None:
            blob["evofed"] = self.evofed.state_dict()
        buf = io.BytesIO()
        torch.save(blob, buf)
        ckpt.write(os.path.join(self.dir, CHECKPOINT), buf.getvalue())  # atomic, with its SHA-256

    def _load(self, payload: bytes) -> Dict[str, Any]:
        """The state in the checkpoint's (verified) payload; a ValueError naming the file when
        it does not hold this run's state."""
        import io
        path = os.path.join(self.dir, CHECKPOINT)
        try:
            blob = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
            self.model.load_state_dict(blob["model"])
            torch.set_rng_state(blob["torch_rng"])
            st = {"round": int(blob["round"]), "server_momentum": blob["server_momentum"],
                  "feedback": {int(c): _feedback(r) for c, r in blob["residuals"].items()},
                  "totals": dict(blob["totals"])}
            if self.downlink is not None:
                st["broadcast"], st["down_feedback"] = blob["broadcast"], _feedback(blob["down_residual"])
            if self.evofed is not None:
                self.evofed.load_state_dict(blob["evofed"])
            for n in self.param_names:
                if tuple(st["server_momentum"][n].shape) != self.shapes[n]:
                    raise ArgumentError(f"server momentum of {n} has shape {tuple(st['server_momentum'][n].shape)}")
        except Exception as e:  # a verified file that does not hold this run's state
            raise ArgumentError(f"checkpoint: {path!r} does not hold this run's state ({type(e).__name__}: {e}); "
                             "move it away (or delete the run directory) to start over") from None
        return st

    def _check_dir(self, resume: bool) -> Optional[bytes]:
        """Before any work: checks that the run directory holds nothing or this experiment
        (then `resume` is needed), fixes torch's thread count, and reads and verifies the
        checkpoint to resume from (its payload, or None to start afresh)."""
        cfg = self.cfg
        path = os.path.join(self.dir, CHECKPOINT)
        cfg_path = os.path.join(self.dir, CONFIG)
        old = _read_json(cfg_path) if os.path.lexists(cfg_path) else None
        if old is not None:
            mine = cfg.resolved().to_dict()
            diff = [k for k in mine if k not in Config.NON_EXPERIMENT + ("threads",) and old.get(k) != mine[k]]
            if diff:
                raise ArgumentError(f"run_name: {self.dir!r} holds a different experiment (differs in "
                                 f"{', '.join(diff)}); choose another run_name or out_dir")
            if not resume:
                raise ArgumentError(f"run_name: {self.dir!r} already holds this run; pass --resume to continue it "
                                 "or choose another run_name")
        # torch's thread count changes its numerics (how reductions are split), so it is part
        # of the experiment: a resumed run keeps the count it was started with. Default: leave
        # one core free (at most 4 threads); torch's OpenMP threads collapse when they share a
        # core with any other busy process (on 2 cores, 2 threads took 1.6 s per CNN round
        # when idle but up to 50 s beside one other busy process).
        stored = old.get("threads") if old is not None else None
        ok = isinstance(stored, int) and not isinstance(stored, bool) and stored >= 1
        threads = cfg.threads or (stored if ok and resume else default_threads())
        if old is not None and stored != threads:
            if not ok:
                raise ArgumentError(f"threads: {self.dir!r} did not record its torch thread count (an older "
                                 "version), and the count changes torch's results; it cannot be resumed exactly: "
                                 "choose another run_name or out_dir")
            raise ArgumentError(f"threads: {self.dir!r} was run with {stored} torch thread(s), and the count changes "
                             f"torch's results; resume with --threads {stored} (or leave --threads out)")
        self.cfg = cfg.replace(threads=threads)
        torch.set_num_threads(threads)
        if resume and os.path.lexists(path):  # lexists: a dangling link is a damaged checkpoint, not none
            return ckpt.read(path)
        return None

    def _prepare_dir(self, payload: Optional[bytes]) -> Optional[Dict[str, Any]]:
        """Writes the config and loads the checkpoint's state (None: a fresh run)."""
        os.makedirs(self.dir, exist_ok=True)
        _atomic_write(os.path.join(self.dir, CONFIG),
                      json.dumps(self.cfg.resolved().to_dict(), indent=2, sort_keys=True).encode())
        return self._load(payload) if payload is not None else None

    # ------------------------------------------------------------------ one client
    def _local_train(self, client: int, rnd: int, start: Dict[str, torch.Tensor]):
        """Local work of `client` in round `rnd` from the model `start`: (update, BatchNorm
        buffers, mean training loss, samples seen, optimizer steps). "fedavg" mode: local
        epochs of momentum SGD, the update is local - start. "gradient" mode: one mini-batch
        (drawn without replacement from the client's data), the update is the plain SGD
        step -lr * (gradient + weight_decay * w)."""
        cfg = self.cfg
        self.worker.load_state_dict(start)
        self.worker.train()
        gen = torch.Generator().manual_seed(_seed(cfg.seed, rnd, client, 1))
        idx = torch.from_numpy(self.parts[client])
        n = idx.numel()
        if cfg.mode == "gradient":
            bi = idx[torch.randperm(n, generator=gen)[:cfg.batch_size]]
            x, y = self.train.batch(bi, cfg.augment, gen)
            self.worker.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(self.worker(x), y)
            loss.backward()
            params = dict(self.worker.named_parameters())
            with torch.no_grad():
                delta = OrderedDict((k, (params[k].grad.add(params[k], alpha=cfg.weight_decay)).mul_(-cfg.lr)
                                     .numpy().astype(np.float32, copy=False)) for k in self.param_names)
            local = self.worker.state_dict()
            buffers = {k: local[k].detach().clone() for k in self.buffer_names}
            return delta, buffers, float(loss.detach()), int(bi.numel()), 1
        opt = torch.optim.SGD(self.worker.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
        losses, seen, steps = 0.0, 0, 0
        for _ in range(cfg.local_epochs):
            order = idx[torch.randperm(n, generator=gen)]
            for b in range(0, n, cfg.batch_size):
                bi = order[b:b + cfg.batch_size]
                if bi.numel() < 2 and n >= 2:
                    continue  # a batch of one breaks BatchNorm; drop it
                x, y = self.train.batch(bi, cfg.augment, gen)
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(self.worker(x), y)
                loss.backward()
                opt.step()
                losses += float(loss.detach()) * bi.numel()
                seen += bi.numel()
                steps += 1
        local = self.worker.state_dict()
        delta = OrderedDict((k, (local[k] - start[k]).detach().numpy().astype(np.float32, copy=False))
                            for k in self.param_names)
        buffers = {k: local[k].detach().clone() for k in self.buffer_names}
        return delta, buffers, losses / max(seen, 1), seen, steps

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, data: Optional[ImageSet] = None):
        """(accuracy, mean loss) of the global model on `data` (default: the test set)."""
        data = self.test if data is None else data
        self.model.eval()
        correct, loss_sum = 0, 0.0
        n = len(data)
        for b in range(0, n, self.cfg.eval_batch_size):
            idx = torch.arange(b, min(n, b + self.cfg.eval_batch_size))
            x, y = data.batch(idx)
            out = self.model(x)
            loss_sum += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
        return correct / n, loss_sum / n

    # ------------------------------------------------------------------ the loop
    def run(self, resume: bool = False) -> str:
        cfg = self.cfg
        t_setup = time.perf_counter()
        payload = self._check_dir(resume)
        cfg = self.cfg  # with the thread count resolved
        status = os.path.join(self.dir, STATUS)
        if payload is None and resume and os.path.lexists(status):
            done = _read_json(status)
            if done.get("rounds", 0) >= cfg.rounds:
                self.log(f"{self.dir}: already finished ({done.get('rounds')} rounds)")
                return self.dir
            raise ArgumentError(f"rounds: {self.dir!r} finished {done.get('rounds')} rounds and its checkpoint was "
                                "deleted (checkpoint=delete); it cannot be extended to "
                                f"{cfg.rounds} rounds: rerun it with --set checkpoint=keep")
        self._load_data()
        self._build()
        st = self._prepare_dir(payload)
        del payload
        self._write_experiment()
        if st is None:
            st = self._fresh_state()
            rec.reset(self.dir)
        else:
            rec.truncate(self.dir, st["round"])
        self.log(f"gradsparse.fl: {cfg.method} {self.method_params} | {cfg.model} | {cfg.mode} | {cfg.partition}"
                 f"{f' alpha={cfg.alpha:g}' if cfg.partition == 'dirichlet' else ''} | {cfg.num_clients} clients | "
                 f"{len(self.train)} train / {0 if self.val is None else len(self.val)} validation / "
                 f"{len(self.test)} test images | lr {cfg.lr:g} | error feedback {'on' if self.ef else 'off'} | "
                 f"energy profile {', '.join(sorted(self.profiles))} | {cfg.threads} torch thread(s)")
        self._write_partition()
        if st["round"]:
            self.log(f"resuming after round {st['round']}")
        m = max(1, int(math.floor(cfg.client_fraction * cfg.num_clients + 0.5)))
        self.setup_s = time.perf_counter() - t_setup
        self._train(st, m)
        rec.export_csv(self.dir)
        result = rec.run_result(rec.read(self.dir), cfg.last_k)
        _atomic_write(os.path.join(self.dir, STATUS),
                      json.dumps({"finished": True, "rounds": cfg.rounds, "result": result}, indent=1).encode())
        if cfg.checkpoint == "delete":
            try:
                os.unlink(os.path.join(self.dir, CHECKPOINT))
            except FileNotFoundError:
                pass
        self.log(f"result: {os.path.basename(self.dir)}: {rec.result_line(result)}")
        return self.dir

    def _train(self, st: Dict[str, Any], m: int) -> None:
        """Runs the rounds after ``st["round"]`` up to ``cfg.rounds``, `m` clients each."""
        cfg = self.cfg
        tqdm = _progress(cfg)
        self._bar = tqdm(total=cfg.rounds, initial=st["round"], desc="rounds", unit="round") if tqdm else None
        one_round = self._round if self.evofed is None else self.evofed.round
        while st["round"] < cfg.rounds:
            rnd = st["round"] + 1
            self._finish_round(st, one_round(rnd, m, st, tqdm))
        if self._bar is not None:
            self._bar.close()

    def _finish_round(self, st: Dict[str, Any], row: Dict[str, Any]) -> None:
        """After round ``row["round"]``: appends its record, checkpoints when due, reports progress."""
        cfg = self.cfg
        rnd = row["round"]
        st["round"] = rnd
        rec.append(self.dir, row)
        if rnd % cfg.checkpoint_every == 0 or rnd == cfg.rounds:
            self._save(st)
        every = max(1, cfg.rounds // 10)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(acc=f"{row['test_acc']:.3f}" if row["test_acc"] is not None else "-")
        elif rnd % every == 0 or rnd == cfg.rounds:
            acc = "-" if row["test_acc"] is None else f"{row['test_acc']:.4f}"
            self.log(f"round {rnd}/{cfg.rounds}: acc {acc}, uplink {row['cum_uplink_bytes'] / 1e6:.2f} MB, "
                     f"energy {row['cum_energy_j']:.4g} J, compression {100 * row['compress_share']:.2f}% "
                     f"of {row['round_s']:.2f} s")

    def _write_experiment(self) -> None:
        """experiment.json: the resolved experiment, its keys, versions and host. A resumed
        run must be the same experiment on the same data (the data are compared by content)."""
        cfg = self.cfg
        setting = cfg.experiment_settings()
        setting["profiles"] = {n: p.as_dict() for n, p in sorted(self.profiles.items())}
        setting["data"] = dict(self.data_id)
        from .config import experiment_keys
        exp = {"format": 1, **experiment_keys(setting), "setting": setting,
               "versions": versions(), "host": host(), "engine": self.engine_info()}
        path = os.path.join(self.dir, EXPERIMENT)
        if os.path.lexists(path):
            old = _read_json(path)
            if old.get("run_key") != exp["run_key"]:
                diff = sorted(k for k in set(setting) | set(old.get("setting", {}))
                              if old.get("setting", {}).get(k) != setting.get(k))
                raise ArgumentError(f"run_name: {self.dir!r} holds a different experiment (differs in "
                                    f"{', '.join(diff) or 'its key'}); choose another run_name or out_dir")
            if old.get("versions") != exp["versions"]:
                self.log(f"warning: resuming a run started with {old.get('versions')} under {exp['versions']}")
                exp["versions_at_start"] = old.get("versions")
        _atomic_write(path, json.dumps(exp, indent=1, sort_keys=True).encode())

    def engine_info(self) -> Dict[str, Any]:
        """What ran the rounds (experiment.json's ``engine``; not part of the experiment's key)."""
        return {"name": "builtin"}

    def _write_partition(self) -> None:
        info = {"sizes": [int(p.size) for p in self.parts], "label_histograms": self.hist.tolist(),
                "costs": {n: c.as_dict() for n, c in self.costs.items()}, "profile": self.profile.as_dict(),
                "profile_description": self.profile.description,
                "client_profiles": self.client_profile,
                "tensor_sizes": dict(self.sizes),
                "costs_by_profile": {p: {n: c.as_dict() for n, c in cs.items()} for p, cs in self.costs_of.items()},
                # each compressor's parameters with their defaults resolved (the config holds
                # only those given)
                "compression": {"uplink": {"method": self.cfg.method, "params": self.method_params,
                                           "error_feedback": self.ef},
                                "downlink": None if self.downlink is None else
                                {"method": self.cfg.downlink, "params": self.downlink.settings(),
                                 "error_feedback": self.down_ef}}}
        _atomic_write(os.path.join(self.dir, "partition.json"), json.dumps(info, indent=1).encode())
        lines = ["client  size  " + " ".join(f"{c:>4d}" for c in range(self.hist.shape[1]))]
        for c, (p, h) in enumerate(zip(self.parts, self.hist)):
            lines.append(f"{c:>6d} {p.size:>5d}  " + " ".join(f"{v:>4d}" for v in h))
        self.log("label histogram per client:\n" + "\n".join(lines))

    def _sample(self, rnd: int, m: int):
        """The `m` clients of round `rnd`, sorted (drawn without replacement, seeded by the
        run seed and the round)."""
        rng = np.random.default_rng(_seed(self.cfg.seed, rnd, 0x5A3))
        return sorted(int(c) for c in rng.choice(self.cfg.num_clients, size=m, replace=False))

    def _evaluate_round(self, rnd: int):
        """(test acc, test loss, validation acc, validation loss) of the global model after
        round `rnd`; None where the round is not evaluated (or there is no validation set)."""
        cfg = self.cfg
        acc_, loss_, vacc, vloss = None, None, None, None
        if rnd % cfg.eval_every == 0 or rnd == cfg.rounds:
            acc_, loss_ = self.evaluate()
            if self.val is not None:
                vacc, vloss = self.evaluate(self.val)
        return acc_, loss_, vacc, vloss

    def _round(self, rnd: int, m: int, st: Dict[str, Any], tqdm) -> Dict[str, Any]:
        cfg = self.cfg
        t0 = time.perf_counter()
        clients = self._sample(rnd, m)
        global_sd = self.model.state_dict()
        start = {k: v.detach().clone() for k, v in global_sd.items()}

        # ---- downlink: what each client receives (and pays to receive)
        t_dl = time.perf_counter()
        if self.downlink is None:
            per_client = self.model_bytes
            receivers = clients
        else:
            per_client = self._broadcast(rnd, st, start)
            receivers = list(range(cfg.num_clients))  # everyone must stay in sync
        down_bytes = per_client * len(receivers)
        down_s = time.perf_counter() - t_dl
        energy = {k: 0.0 for k in ("compute", "train_mem", "update", "tx", "rx")}
        for c in receivers:
            energy["rx"] += 8.0 * per_client * self.profiles[self.client_profile[c]].rx_j_per_bit

        agg = {n: np.zeros(self.shapes[n], np.float64) for n in self.param_names}
        buf_agg = {n: torch.zeros_like(start[n], dtype=torch.float64) for n in self.buffer_names}
        by_tensor = {n: 0 for n in self.param_names}
        steps_total = 0
        totals = {"up": 0, "selected": 0, "compress_s": 0.0, "encode_s": 0.0, "decode_s": 0.0, "train_s": 0.0,
                  "loss": 0.0}
        weight = 0
        it = tqdm(clients, desc=f"round {rnd}", unit="client", leave=False) if tqdm else clients
        for c in it:
            t_tr = time.perf_counter()
            delta, buffers, loss, seen, steps = self._local_train(c, rnd, start)
            totals["train_s"] += time.perf_counter() - t_tr
            prof_name = self.client_profile[c]
            t_c = time.perf_counter()
            fb = st["feedback"].setdefault(c, ErrorFeedback()) if self.ef else None
            comp = self.uplink.compress(delta, seed=_seed(cfg.seed, rnd, c, 2),
                                        costs=self.cost_per_tensor_of[prof_name], feedback=fb)
            totals["compress_s"] += time.perf_counter() - t_c
            totals["encode_s"] += comp.encode_s
            t_d = time.perf_counter()
            sent = self.uplink.decompress(comp.payload, self.like)  # the server decodes the real bytes
            totals["decode_s"] += time.perf_counter() - t_d
            # FedAvg weights by client size; gradient mode averages the clients' gradients
            n_i = len(self.parts[c]) if cfg.mode == "fedavg" else 1
            for n in self.param_names:
                agg[n] += n_i * sent[n]
            for k in self.buffer_names:
                buf_agg[k] += n_i * buffers[k].double()
            weight += n_i
            sent_bytes = comp.nbytes + self.buffer_bytes
            self._add_client_energy(energy, c, comp.selected, sent_bytes, steps, seen)
            totals["up"] += sent_bytes
            totals["selected"] += sum(comp.selected.values())
            for n, v in comp.selected.items():
                by_tensor[n] += int(v)
            steps_total += steps
            totals["loss"] += loss * n_i

        self._server_update(st, start, agg, buf_agg, weight)
        acc_, loss_, vacc, vloss = self._evaluate_round(rnd)
        round_s = time.perf_counter() - t0
        return rec.make_row(st["totals"], cfg, rnd, params=self.method_params, clients=clients, test_acc=acc_,
                            test_loss=loss_, val_acc=vacc, val_loss=vloss,
                            train_loss=totals["loss"] / weight, uplink=totals["up"], downlink=down_bytes,
                            selected=totals["selected"], density=totals["selected"] / (self.dim * len(clients)),
                            selected_by_tensor=by_tensor, steps=steps_total, energy=energy, compress_s=totals["compress_s"], encode_s=totals["encode_s"],
                            decode_s=totals["decode_s"], train_s=totals["train_s"], downlink_s=down_s,
                            round_s=round_s)

    def _add_client_energy(self, energy: Dict[str, float], c: int, selected: Dict[str, int], sent_bytes: int,
                           steps: int, seen: int) -> None:
        """Adds client `c`'s compute and uplink energy terms of one round to `energy`."""
        prof_name = self.client_profile[c]
        terms = client_account(selected=selected, payload_bytes=sent_bytes, received_bytes=0, steps=steps,
                               flops=self.flops_per_sample * seen, sizes=self.sizes,
                               costs=self.costs_of[prof_name], profile=self.profiles[prof_name])
        for k in ("compute", "train_mem", "update", "tx"):
            energy[k] += terms[k]

    def _server_update(self, st: Dict[str, Any], start: Dict[str, torch.Tensor], agg: Dict[str, np.ndarray],
                       buf_agg: Dict[str, torch.Tensor], weight: int) -> None:
        """The server's step: the weighted mean of the decoded updates (`agg`: their float64
        weighted sums) through the optional server momentum and server lr, the BatchNorm
        buffers' weighted mean; loads the new global model."""
        cfg = self.cfg
        new_sd = dict(start)
        with torch.no_grad():
            for n in self.param_names:
                upd = torch.from_numpy((agg[n] / weight).astype(np.float32))
                mom = st["server_momentum"][n]
                mom.mul_(cfg.server_momentum).add_(upd)
                new_sd[n] = start[n] + cfg.server_lr * mom
            for k in self.buffer_names:
                new_sd[k] = (buf_agg[k] / weight).to(start[k].dtype)
        self.model.load_state_dict(new_sd)

    def _broadcast(self, rnd: int, st: Dict[str, Any], start: Dict[str, torch.Tensor]) -> int:
        """Compressed downlink: every client keeps the broadcast model; the server sends the
        compressed difference to it (with its own error feedback). Returns the payload size
        and replaces `start` (what clients train from) by the broadcast model."""
        cfg = self.cfg
        bc = st["broadcast"]
        diff = OrderedDict((n, (start[n] - bc[n]).numpy().astype(np.float32)) for n in self.param_names)
        comp = self.downlink.compress(diff, seed=_seed(cfg.seed, rnd, 0xD0, 3), costs=self.cost_per_tensor,
                                      feedback=st["down_feedback"] if self.down_ef else None)
        sent = self.downlink.decompress(comp.payload, self.like)
        for n in self.param_names:
            bc[n] = bc[n] + torch.from_numpy(sent[n])
            start[n] = bc[n].clone()
        for k in self.buffer_names:
            bc[k] = start[k].clone()
        return comp.nbytes + self.buffer_bytes


def _residuals(ef: ErrorFeedback) -> Dict[str, torch.Tensor]:
    """An ErrorFeedback's residuals as tensors (what the checkpoint stores)."""
    return {n: torch.as_tensor(r) for n, r in ef.state_dict().items()}


def _feedback(residuals: Dict[str, Any]) -> ErrorFeedback:
    """An ErrorFeedback holding the checkpoint's residuals."""
    ef = ErrorFeedback()
    ef.load_state_dict(dict(residuals))
    return ef


def _sha256(x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of images and labels (their bytes, shapes and dtypes): data are identified by
    content, not by the folder they were read from."""
    import hashlib
    h = hashlib.sha256()
    for a in (x, y):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def versions() -> Dict[str, str]:
    """Versions of what decides a run's numbers."""
    import platform
    import gradsparse
    return {"gradsparse": getattr(gradsparse, "__version__", "unknown"), "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def host() -> Dict[str, Any]:
    import platform
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpus": os.cpu_count()}


def _dense_size(tensors: Dict[str, torch.Tensor]) -> int:
    """Bytes of the dense float32 message of `tensors` (gradsparse.encoded_size: no bytes built)."""
    import gradsparse as gs
    return gs.encoded_size({k: np.zeros(tuple(v.shape), np.float32) for k, v in tensors.items()})


def run(cfg: Config, *, resume: bool = False, log: Callable[[str], None] = print) -> str:
    """Runs (or resumes) the experiment `cfg` on the builtin engine; returns its run directory
    (:func:`gradsparse.fl.run` runs it on the engine the config names)."""
    if cfg.engine != "builtin":
        raise ArgumentError(f"engine: gradsparse.fl.simulation.run is the builtin engine; run engine "
                            f"{cfg.engine!r} with gradsparse.fl.run")
    return Simulation(cfg, log=log).run(resume=resume)
