"""`TopKState`: the hook's settings, its per-bucket plans and residuals, and their checkpoint."""
from __future__ import annotations

import collections
import math
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist

from ...compress import ErrorFeedback
from ...errors import ArgumentError, ArgumentTypeError
from ...selection import k_from_ratio
from . import gpu
from .buckets import BucketPlan
from ...compress.traffic import Link, choose, scheme_costs
from .link import measure_link

__all__ = ["TopKState"]

METHODS = ("topk", "cwmp", "threshold")
SCHEME_CHOICES = ("auto", "allgather", "dense", "split")
VALUE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_STATE_VERSION = 1


def _positive_int(v: Any, what: str, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ArgumentError(f"{what}: must be an integer >= {low}, got {v!r}")
    return v


class TopKState:
    """Settings, persistent buffers and residuals of :func:`topk_hook` (see the package
    docstring for the whole story).

    * ``ratio`` (the fraction of each bucket a rank keeps, in (0, 1]) or ``k`` (elements per
      bucket and rank): exactly one. For ``method="threshold"`` it is the bound a payload
      carries (a rank over it raises on every rank).
    * ``method``: ``"topk"`` (magnitude), ``"cwmp"`` (score |x|^q / cost^alpha; ``cost`` is a
      number or a callable ``cost(parameter) -> number or tensor of its shape``, evaluated
      once per bucket layout), ``"threshold"`` (every |x + e| >= ``tau``).
    * ``scheme``: ``"auto"`` (per bucket, the cheapest of the three under the link model),
      ``"allgather"``, ``"dense"`` or ``"split"``; ``link=(alpha, beta)`` gives the model's
      figures, otherwise ``"auto"`` measures them once (`measure_link`) at the first step.
    * ``value_dtype``: ``"float32"`` or ``"bfloat16"`` values on the wire (the rounding
      error stays in the residual).
    * ``threads``: threads of the selection; default ``torch.get_num_threads()`` at each
      call, never more.
    * ``module``: the model (or its DDP wrapper): names the parameters for `state_dict`.

    CUDA buckets (float32; schemes ``allgather`` and ``dense``, ``auto`` choosing between
    them) keep their residuals on the bucket's device; `state_dict` saves them as CPU
    tensors, `load_state_dict` places them on whatever device the bucket has.

    Thread safety: one state serves one DDP model; DDP calls the hook from its autograd
    thread and the combines run on gloo's threads, each on its own bucket's buffers. Do
    not share a state between models or call `state_dict` during a backward pass.
    """

    def __init__(self, ratio: Optional[float] = None, *, k: Optional[int] = None, method: str = "topk",
                 cost: Any = None, tau: Optional[float] = None, q: float = 2.0, alpha: float = 1.0,
                 scheme: str = "auto", value_dtype: str = "float32", error_feedback: bool = True,
                 start_iter: int = 1, link: Any = None, threads: Optional[int] = None, module: Any = None,
                 process_group: Any = None) -> None:
        if (ratio is None) == (k is None):
            raise ArgumentError("ratio, k: give exactly one of them")
        if ratio is not None:
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < float(ratio) <= 1.0:
                raise ArgumentError(f"ratio: must be in (0, 1], got {ratio!r}")
            ratio = float(ratio)
        if k is not None:
            _positive_int(k, "k")
        if method not in METHODS:
            raise ArgumentError(f"method: expected one of {METHODS}, got {method!r}")
        if (cost is not None) != (method == "cwmp"):
            raise ArgumentError("cost: give it with method='cwmp' (and only then)")
        if cost is not None and not callable(cost):
            if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not (math.isfinite(cost) and cost > 0):
                raise ArgumentError(f"cost: expected a number > 0 or a callable, got {cost!r}")
        if (tau is not None) != (method == "threshold"):
            raise ArgumentError("tau: give it with method='threshold' (and only then)")
        if tau is not None and (isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau >= 0
                                or not math.isfinite(tau)):
            raise ArgumentError(f"tau: must be a finite number >= 0, got {tau!r}")
        for what, v in (("q", q), ("alpha", alpha)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ArgumentError(f"{what}: must be a finite number, got {v!r}")
        if scheme not in SCHEME_CHOICES:
            raise ArgumentError(f"scheme: expected one of {SCHEME_CHOICES}, got {scheme!r}")
        if value_dtype not in VALUE_DTYPES:
            raise ArgumentError(f"value_dtype: expected one of {tuple(VALUE_DTYPES)}, got {value_dtype!r}")
        if not isinstance(error_feedback, bool):
            raise ArgumentTypeError("error_feedback: must be a bool")
        _positive_int(start_iter, "start_iter", 0)
        if threads is not None:
            _positive_int(threads, "threads")
        self.ratio, self.k = ratio, k
        self.method, self.cost, self.tau, self.q, self.alpha = method, cost, tau, float(q), float(alpha)
        self.scheme = scheme
        self.value_dtype = value_dtype
        self.error_feedback = error_feedback
        self.start_iter = start_iter
        self.link: Optional[Link] = None if link is None else Link.of(link)
        self.threads = threads
        self.process_group = process_group
        self.iteration = 0
        #: the residuals, one per bucket layout (gradsparse's one error feedback)
        self.feedback = ErrorFeedback()
        #: bytes this rank sent (ring model of each collective) and those plain DDP's
        #: all-reduce would have sent, over the compressed iterations
        self.sent_bytes = 0
        self.dense_bytes = 0
        #: how often each scheme was used (bucket-steps)
        self.schemes_used: "collections.Counter[str]" = collections.Counter()
        self._names: Dict[int, str] = {}
        if module is not None:
            self.attach(module)
        self._plans: Dict[Tuple[int, ...], BucketPlan] = {}
        self._layouts: Dict[Tuple[int, ...], Tuple[Tuple[int, int], ...]] = {}  # key -> ((param id, size), ...)
        self._pending: Dict[str, np.ndarray] = {}  # residuals restored by parameter name, not yet placed
        self._restored: Optional[Dict[str, Any]] = None
        self._checked = False
        self._groups: Dict[int, Any] = {}
        self._buckets_ok: set = set()  # (device type, dtype) of buckets already checked
        self._used: set = set()  # plan keys used in the current iteration
        self._local: Dict[Any, BucketPlan] = {}  # local_pass's plans

    # ------------------------------------------------------------------ settings

    def attach(self, module: Any) -> None:
        """Names the parameters (for `state_dict`) after `module` (a model or its DDP wrapper)."""
        if not hasattr(module, "named_parameters"):
            raise ArgumentTypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
        inner = getattr(module, "module", module)
        self._names = {id(p): name for name, p in inner.named_parameters()}

    def k_for(self, n: int) -> int:
        """Elements a rank keeps from a bucket of n elements (the payload bound for a threshold)."""
        return k_from_ratio(self.ratio, n) if self.ratio is not None else min(self.k, n)

    def fingerprint(self) -> torch.Tensor:
        """The settings every rank must share, as float64 numbers (checked at the first step)."""
        return torch.tensor([
            _STATE_VERSION, METHODS.index(self.method), -1.0 if self.ratio is None else self.ratio,
            -1.0 if self.k is None else float(self.k), -1.0 if self.tau is None else self.tau, self.q, self.alpha,
            SCHEME_CHOICES.index(self.scheme), list(VALUE_DTYPES).index(self.value_dtype), float(self.error_feedback),
            float(self.start_iter), -1.0 if self.link is None else self.link.alpha,
            -1.0 if self.link is None else self.link.beta], dtype=torch.float64)

    _FIELDS = ("version", "method", "ratio", "k", "tau", "q", "alpha", "scheme", "value_dtype", "error_feedback",
               "start_iter", "link alpha", "link beta")

    def check_bucket(self, buf: torch.Tensor, group: Any) -> None:
        """Raises unless the settings and `group` can serve a bucket like `buf` (its device
        and dtype; checked once per kind of bucket): a CPU bucket needs gloo, a CUDA bucket
        NCCL (or gloo), is float32 and takes no 'split'."""
        kind = (buf.device.type, buf.dtype)
        if kind in self._buckets_ok:
            return
        gpu.check_transport(buf.device.type, gpu.group_config(group))
        if gpu.handles(buf.device):
            if buf.dtype != torch.float32:
                raise ArgumentTypeError(f"bucket: {buf.dtype} gradients on {buf.device}; the hook's GPU path takes "
                                        "float32 buckets (keep the parameters in float32, e.g. with torch.autocast "
                                        "for mixed precision); 16-bit and float64 buckets are served on the CPU (gloo)")
            if self.scheme == "split":
                raise ArgumentError("scheme: 'split' runs on CPU buckets only (its re-selection is host code); "
                                    f"on {buf.device} use 'allgather', 'dense' or 'auto' (which then chooses between "
                                    "them)")
            gpu.load_ops()  # the CUDA backend must be built: a clear error now, not inside a callback
        self._buckets_ok.add(kind)

    def check_ranks(self, group: Any, device: Any = None) -> None:
        """Compares the settings of every rank (one blocking all-gather, once, of tensors on
        `device`, the buckets' device: default the CPU): a rank that differs makes every
        rank raise the same error, naming the settings. Measures the link there if needed."""
        device = torch.device("cpu") if device is None else torch.device(device)
        mine = self.fingerprint().to(device)
        world = dist.get_world_size(group)
        gathered = torch.zeros((world, mine.numel()), dtype=torch.float64, device=device)
        dist.all_gather(list(gathered.unbind(0)), mine, group=group)
        got = gathered.cpu()
        differ = [f for j, f in enumerate(self._FIELDS) if not bool(torch.all(got[:, j] == got[0, j]))]
        if differ:
            raise ArgumentError(f"TopKState: the ranks disagree on {', '.join(differ)}: every rank must use the same "
                                "settings (per rank: " + "; ".join(
                                    f"rank {r}: " + ", ".join(f"{f}={got[r, self._FIELDS.index(f)].item():g}" for f in differ)
                                    for r in range(world)) + ")")
        if self._restored is not None and self._restored["world_size"] != world:
            raise ArgumentError(f"state: the residuals were saved by a group of {self._restored['world_size']} ranks, "
                                f"this one has {world}; residuals are per rank and do not map to another world size "
                                "(start without them: reset() or a fresh TopKState)")
        if self.scheme == "auto" and self.link is None:
            self.link = measure_link(group, device=device)
        self._checked = True

    # ------------------------------------------------------------------ plans

    def plan(self, bucket: Any, buf: torch.Tensor, group: Any, world: int) -> BucketPlan:
        """The bucket's plan, made on first sight of its layout (residuals carried over
        from the previous layouts parameter by parameter: DDP rebuilds its buckets once)."""
        params = bucket.parameters()
        key = tuple(id(p) for p in params) + (buf.numel(),)
        plan = self._plans.get(key)
        if plan is None:
            layout = tuple((id(p), p.numel()) for p in params)
            rest = buf.numel() - sum(s for _, s in layout)
            if rest:
                layout = layout + ((-1, rest),)  # a tail DDP gave no parameter
            plan = self.make_plan(key, layout, buf.numel(), buf.dtype, world, dist.get_rank(group),
                                  f"bucket:{bucket.index()}:{hash(key) & 0xffffffff:08x}", device=buf.device)
            if plan.scheme == "split":
                plan.group = self._group_for(bucket.index())
            if plan.costs is None and self.method == "cwmp":
                plan.costs = self._costs(params, plan.n)
            if plan.on_gpu and plan.costs is not None:
                plan.device_costs = torch.from_numpy(plan.costs).to(plan.device)  # once per layout
            self._carry_residuals(plan)
            self._plans[key] = plan
        return plan

    def make_plan(self, key: Any, layout: Any, n: int, dtype: torch.dtype, world: int, rank: int, name: str,
                  scheme: Optional[str] = None, device: Any = None) -> BucketPlan:
        """A bucket plan: k from the settings, the scheme given or chosen by the link model
        (on a CUDA `device`: allgather or dense)."""
        if n >= 2 ** 31:
            raise ArgumentError(f"bucket: {n} elements; the hook's int32 indices need fewer than 2**31")
        k = self.k_for(n)
        vdt = VALUE_DTYPES[self.value_dtype]
        fast = dtype == torch.float32
        on_gpu = device is not None and gpu.handles(torch.device(device))
        scheme = scheme or self.scheme
        if scheme not in SCHEME_CHOICES:
            raise ArgumentError(f"scheme: expected one of {SCHEME_CHOICES}, got {scheme!r}")
        if on_gpu and (scheme == "split" or not fast):
            raise ArgumentError(f"bucket: a {dtype} bucket on {device} takes float32 and scheme 'allgather', "
                                f"'dense' or 'auto' (got scheme={scheme!r})")
        if scheme == "auto":
            vb = torch.empty((), dtype=vdt if fast else dtype).element_size()
            costs = scheme_costs(self.link or Link(0.0, 0.0), world, n, k, vb + 4)
            split_ok = fast and self._whole_world() and not on_gpu
            scheme = choose(costs) if split_ok else min(("allgather", "dense"), key=lambda s: costs[s])
        if scheme == "split" and not self._whole_world():
            raise ArgumentError("scheme: 'split' needs the world group (its second collective runs on a group of its "
                                "own per bucket, which every rank of the world must create); use 'allgather' or "
                                "'dense' with a process_group")
        if not fast and (scheme == "split" or self.method != "topk"):
            raise ArgumentError(f"bucket: a {dtype} bucket takes method='topk' with scheme 'allgather' or 'dense'"
                                f" (got method={self.method!r}, scheme={scheme!r}); float32 buckets take every setting")
        plan = BucketPlan(key, name, n, dtype, world, rank, k, scheme, vdt, layout, self.method == "threshold",
                          device)
        if self.method == "cwmp" and not callable(self.cost):
            plan.costs = np.full(n, self.cost, dtype=np.float32)
        return plan

    def _whole_world(self) -> bool:
        return self.process_group is None or self.process_group is dist.group.WORLD

    def _group_for(self, index: int) -> Any:
        """The process group of a split bucket's second collective: one per bucket index, so
        collectives issued from gloo's callback threads never interleave with another
        bucket's on one group (all ranks create them in the same bucket order)."""
        if index not in self._groups:
            self._groups[index] = dist.new_group(backend="gloo")
        return self._groups[index]

    def _costs(self, params: Any, n: int) -> np.ndarray:
        out = np.ones(n, dtype=np.float32)
        off = 0
        for p in params:
            c = self.cost(p) if callable(self.cost) else self.cost
            if isinstance(c, torch.Tensor):
                c = c.detach().to(torch.float32).cpu().numpy()
            out[off:off + p.numel()] = np.broadcast_to(np.asarray(c, dtype=np.float32).reshape(-1) if np.ndim(c)
                                                       else np.float32(c), (p.numel(),))
            off += p.numel()
        if not np.all(np.isfinite(out) & (out > 0)):
            raise ArgumentError("cost: every cost must be finite and > 0")
        return out

    def _residual_of(self, plan: BucketPlan) -> Optional[np.ndarray]:
        """A host copy of the plan's residual (flat), or None where it has none yet."""
        if plan.on_gpu:
            return plan.residual.detach().to("cpu", copy=True).numpy()
        res = self.feedback.residual(plan.name)
        return None if res is None else np.asarray(res).reshape(-1)

    def _carry_residuals(self, plan: BucketPlan) -> None:
        """Builds the new layout's residual from those of its parameters in the old layouts
        (or restored by name); a parameter without one starts at zero. An old layout's
        residual is read once, and only if one of its parameters moves."""
        if not self.error_feedback:
            return
        olds = list(self._plans.values())
        host: Dict[Any, Optional[np.ndarray]] = {}  # old plan key -> its residual on the host
        pieces = []
        off = 0
        for pid, size in plan.layout:
            got = self._param_residual(olds, host, pid, size)
            if got is not None:
                pieces.append((off, size, got))
            off += size
        if not pieces:
            return
        if plan.on_gpu:
            for off, size, got in pieces:  # device to device, or host to device (float64 rounded)
                plan.residual[off:off + size].copy_(torch.as_tensor(got))
            return
        res = np.zeros(plan.n, np.float64 if plan.dtype == torch.float64 else np.float32)
        for off, size, got in pieces:
            res[off:off + size] = got.detach().cpu().numpy() if isinstance(got, torch.Tensor) else got
        self.feedback.load_residual(plan.name, res)

    def _param_residual(self, olds: Any, host: Dict[Any, Optional[np.ndarray]], pid: int, size: int) -> Any:
        """The residual of parameter `pid` (`size` elements) in an old layout (a device
        tensor where both are on a GPU, else numpy) or restored by name; None if none."""
        for old in olds:
            off = 0
            for q, s in old.layout:
                if q == pid and s == size and q != -1:
                    if old.on_gpu:
                        return old.residual[off:off + s]
                    if old.key not in host:
                        host[old.key] = self._residual_of(old)
                    res = host[old.key]
                    return None if res is None else res[off:off + s]
                off += s
        name = self._names.get(pid)
        if name is not None and name in self._pending:
            got = self._pending.pop(name)
            if got.size != size:
                raise ArgumentError(f"state: the residual of {name!r} has {got.size} elements, the parameter {size}")
            return got
        return None

    # ------------------------------------------------------------------ checkpoint

    def state_dict(self) -> Dict[str, Any]:
        """This rank's residuals by parameter name (each rank saves its own: they differ),
        with the world size, rank, iteration and settings."""
        if not self._names:
            raise ArgumentError("module: state_dict names the residuals by parameter; give TopKState(module=model) "
                                "or call state.attach(model)")
        out: Dict[str, torch.Tensor] = {}
        for plan in self._plans.values():
            res = self._residual_of(plan)
            off = 0
            for pid, size in plan.layout:
                if pid in self._names and res is not None:
                    out[self._names[pid]] = torch.from_numpy(res[off:off + size].copy())
                off += size
        group = self.process_group if self.process_group is not None else dist.group.WORLD
        return {"version": _STATE_VERSION, "world_size": dist.get_world_size(group), "rank": dist.get_rank(group),
                "iteration": self.iteration, "settings": self.fingerprint().tolist(), "residuals": out}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what `state_dict` saved (on the same rank of a group of the same size;
        the check runs at the next step if no group exists yet). Residuals are placed into
        the buckets as they appear, whatever their layout."""
        if not isinstance(state, Mapping) or not isinstance(state.get("residuals"), Mapping):
            raise ArgumentTypeError("state: expected the dict TopKState.state_dict() returned")
        if state.get("version") != _STATE_VERSION:
            raise ArgumentError(f"state: version {state.get('version')!r}, this gradsparse reads {_STATE_VERSION}")
        for what in ("world_size", "rank", "iteration"):
            if isinstance(state.get(what), bool) or not isinstance(state.get(what), int) or state[what] < 0:
                raise ArgumentError(f"state: {what} must be an integer >= 0, got {state.get(what)!r}")
        if list(state.get("settings", [])) != self.fingerprint().tolist():
            raise ArgumentError("state: saved with other settings (method, ratio/k, scheme, value_dtype, ...) than "
                                "this TopKState's")
        if dist.is_initialized():
            group = self.process_group if self.process_group is not None else dist.group.WORLD
            if state["world_size"] != dist.get_world_size(group):
                raise ArgumentError(f"state: saved by a group of {state['world_size']} ranks, this one has "
                                    f"{dist.get_world_size(group)}; residuals are per rank and do not map to another "
                                    "world size")
            if state["rank"] != dist.get_rank(group):
                raise ArgumentError(f"state: saved by rank {state['rank']}, loaded on rank {dist.get_rank(group)}")
        pending: Dict[str, np.ndarray] = {}
        for name, r in state["residuals"].items():
            if not isinstance(name, str) or not isinstance(r, torch.Tensor) or r.dtype not in (torch.float32,
                                                                                                 torch.float64):
                raise ArgumentTypeError(f"state: residuals[{name!r}] must be a float32/float64 tensor")
            r = r.detach().cpu().reshape(-1)
            if not bool(torch.all(torch.isfinite(r))):
                raise ArgumentError(f"state: residuals[{name!r}] is not finite")
            pending[name] = r.numpy().copy()
        self.reset()
        self._pending = pending
        self._restored = {"world_size": state["world_size"]}
        self.iteration = state["iteration"]
        self._checked = False

    def reset(self) -> None:
        """Forgets every residual and plan (the next step starts from zero residuals)."""
        self.feedback.reset()
        self._plans.clear()
        self._used = set()
        self._pending = {}
        self._restored = None

    @property
    def residuals(self) -> Dict[Tuple[int, ...], torch.Tensor]:
        """Bucket layout (parameter ids, in order) -> a copy of its residual (flat; on the
        bucket's device)."""
        out = {}
        for plan in self._plans.values():
            if plan.on_gpu:
                r = plan.residual.clone()
            else:
                res = self.feedback.residual(plan.name)
                if res is None:
                    continue
                r = torch.as_tensor(np.asarray(res)).reshape(-1)
            out[tuple(pid for pid, _ in plan.layout if pid != -1)] = r
        return out

    def threads_now(self) -> int:
        """Threads the selection may use in this call."""
        avail = max(1, torch.get_num_threads())
        return avail if self.threads is None else min(self.threads, avail)

    def end_iteration(self, used: Any) -> None:
        """Drops the plans (and residuals) of layouts this iteration did not use: after DDP's
        bucket rebuild the old layouts' residuals live on in the new ones."""
        for key in [key for key in self._plans if key not in used]:
            plan = self._plans.pop(key)
            self.feedback.reset(plan.name)
