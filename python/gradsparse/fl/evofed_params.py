"""The ``evofed`` method's parameters in the harness (no torch): names, defaults, presets,
validation, resolution, and the :class:`gradsparse.evofed.EvoFed` object they describe.

``evofed`` is not a compressor of :mod:`gradsparse.compress` (its uplink is a fitness
vector, not an encoded update, and every party applies the same update): the config, the
sweep and the analysis ask this module about its parameters where they ask the compressor
registry about a compressor's. The protocol itself is :mod:`gradsparse.fl.evofed_round`.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping

from ..errors import ArgumentError

__all__ = ["METHOD", "PRESETS", "DEFAULTS", "OPTIMIZERS", "check_params", "check_config", "defaults",
           "resolve", "build"]

METHOD = "evofed"
PRESETS = ("fmnist", "cifar")
OPTIMIZERS = ("adam", "momentum")
BITS = (None, 32, 16, 8, 4, 2, 1)  #: gradsparse.evofed.BITS: float32 (None, 32), float16, qsgd
#: the parameters and their defaults without a preset: the library's shaping and optimizer
#: defaults (z-score only, no weight term, Adam) with the plain official variant's
#: population (128) and sigma (0.35). ``opt_lr`` None: the optimizer's own default;
#: ``keep``/``server_keep`` None: every fitness value (else that many per chunk, by |f|);
#: ``bits`` None: float32 (16: float16; 8/4/2/1: stochastic qsgd).
DEFAULTS: Dict[str, Any] = {
    "population": 128, "sigma": 0.35, "partitions": 1, "shared_noise": True,
    "zscore": True, "centered_ranks": False, "rank_factor": 1, "weight": 0.0,
    "keep": None, "bits": None, "server_keep": None,
    "optimizer": "adam", "opt_lr": None, "sigma_decay": 1.0, "sigma_min": 0.0, "preset": "",
}


def _need(cond: bool, name: str, msg: str) -> None:
    if not cond:
        raise ArgumentError(f"params.{name}: {msg}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def check_params(params: Mapping[str, Any]) -> None:
    """ArgumentError naming ``params.NAME`` for an unknown parameter or a bad value."""
    if not isinstance(params, Mapping):
        raise ArgumentError(f"params: expected a dict of evofed parameters, got {params!r}")
    for k in params:
        _need(k in DEFAULTS, str(k), f"evofed has no such parameter; it takes {', '.join(DEFAULTS)}")
    p = params
    if "population" in p:
        v = p["population"]
        _need(_is_int(v) and v >= 2 and v % 2 == 0, "population", f"expected an even integer >= 2, got {v!r}")
    for name in ("partitions", "rank_factor"):
        if name in p:
            _need(_is_int(p[name]) and p[name] >= 1, name, f"expected an integer >= 1, got {p[name]!r}")
    for name in ("keep", "server_keep"):
        if p.get(name) is not None:
            _need(_is_int(p[name]) and p[name] >= 1, name, f"expected null or an integer >= 1, got {p[name]!r}")
    if "bits" in p:
        v = p["bits"]
        _need((v is None or _is_int(v)) and v in BITS, "bits", f"expected null, 32, 16, 8, 4, 2 or 1, got {v!r}")
    for name in ("shared_noise", "zscore", "centered_ranks"):
        if name in p:
            _need(isinstance(p[name], bool), name, f"expected true or false, got {p[name]!r}")
    if "sigma" in p:
        _need(_is_real(p["sigma"]) and p["sigma"] > 0, "sigma", f"expected a finite number > 0, got {p['sigma']!r}")
    if "weight" in p:
        _need(_is_real(p["weight"]), "weight", f"expected a finite number, got {p['weight']!r}")
    if p.get("opt_lr") is not None:
        v = p["opt_lr"]
        _need(_is_real(v) and v > 0, "opt_lr", f"expected null or a number > 0, got {v!r}")
    if "sigma_decay" in p:
        v = p["sigma_decay"]
        _need(_is_real(v) and 0 < v <= 1, "sigma_decay", f"expected a number in (0, 1], got {v!r}")
    if "sigma_min" in p:
        v = p["sigma_min"]
        _need(_is_real(v) and v >= 0, "sigma_min", f"expected a finite number >= 0, got {v!r}")
    if "optimizer" in p:
        _need(p["optimizer"] in OPTIMIZERS, "optimizer", f"expected 'adam' or 'momentum', got {p['optimizer']!r}")
    if "preset" in p:
        _need(p["preset"] in PRESETS + ("",), "preset", f"expected 'fmnist', 'cifar' or '', got {p['preset']!r}")


def _preset_values(name: str) -> Dict[str, Any]:
    """The parameters of the official settings `name` (read from EvoFed.official)."""
    from .. import evofed as ef
    o = ef.EvoFed.official(name)
    pop, sh = o.population, o.shaping
    return {"population": int(pop.size), "sigma": float(pop.sigma), "partitions": int(pop.partitions),
            "shared_noise": bool(pop.shared_noise), "zscore": bool(sh.zscore),
            "centered_ranks": bool(sh.centered_ranks), "rank_factor": int(sh.rank_factor), "weight": float(sh.weight),
            "keep": o.keep, "bits": o.bits, "server_keep": o.server_keep,
            "optimizer": "momentum" if isinstance(o.optimizer, ef.LaggedMomentum) else "adam",
            "opt_lr": float(o.optimizer.lr), "sigma_decay": float(o.sigma_decay), "sigma_min": float(o.sigma_min)}


def _default_lr(optimizer: str) -> float:
    from .. import evofed as ef
    return float((ef.LaggedMomentum() if optimizer == "momentum" else ef.Adam()).lr)


def resolve(params: Mapping[str, Any]) -> Dict[str, Any]:
    """Every parameter, in :data:`DEFAULTS`' order: those given, else the preset's, else the
    defaults; ``opt_lr`` None becomes the optimizer's default rate. Validated (the
    EvoFed object is built once, so the library's own checks run too)."""
    check_params(params)
    preset = params.get("preset", "")
    out = dict(DEFAULTS)
    if preset:
        out.update(_preset_values(preset))
    out.update(params)
    out["preset"] = preset
    for name in ("keep", "server_keep"):
        _need(out[name] is None or out[name] <= out["population"], name,
              f"at most the population ({out['population']}) values per chunk, got {out[name]}")
    if out["bits"] == 32:
        out["bits"] = None  # float32 either way: one experiment, one key
    if out["opt_lr"] is None:
        out["opt_lr"] = _default_lr(out["optimizer"])
    build(out, seed=0)
    return out


def defaults(preset: str = "") -> Dict[str, Any]:
    """The resolved parameters of `preset` alone (what the analysis compares labels with)."""
    return resolve({"preset": preset} if preset else {})


def build(resolved: Mapping[str, Any], seed: int):
    """The :class:`gradsparse.evofed.EvoFed` of resolved parameters, its population seeded
    by `seed`; the library's ValueError/TypeError comes back as an ArgumentError naming
    ``params``."""
    from .. import evofed as ef
    p = resolved
    try:
        pop = ef.Population(p["population"], p["sigma"], seed=seed, partitions=p["partitions"],
                            shared_noise=p["shared_noise"])
        shaping = ef.Shaping(centered_ranks=p["centered_ranks"], rank_factor=p["rank_factor"], zscore=p["zscore"],
                             weight=p["weight"])
        opt = ef.LaggedMomentum(lr=p["opt_lr"]) if p["optimizer"] == "momentum" else ef.Adam(lr=p["opt_lr"])
        return ef.EvoFed(pop, shaping=shaping, optimizer=opt, keep=p["keep"], bits=p["bits"],
                         server_keep=p["server_keep"], sigma_decay=p["sigma_decay"], sigma_min=p["sigma_min"])
    except (ValueError, TypeError) as e:
        raise ArgumentError(f"params: {e}") from None


def check_config(cfg, batchnorm_models=()) -> None:
    """The settings that do not apply to evofed, refused with an ArgumentError naming them:
    gradient mode, a downlink compressor (the downlink is the averaged fitness), error
    feedback on, server momentum or a server learning rate (the step is the EvoFed
    optimizer's), and models with BatchNorm statistics (only parameters are encoded):
    `batchnorm_models` names them (config.BATCHNORM_MODELS, passed in because config
    imports this module)."""

    def need(cond: bool, name: str, msg: str) -> None:
        if not cond:
            raise ArgumentError(f"{name}: {msg}")

    need(cfg.mode == "fedavg", "mode", f"evofed runs in 'fedavg' mode (local epochs, then fitness), got {cfg.mode!r}")
    need(cfg.downlink == "none" and not cfg.downlink_params, "downlink",
         "evofed's downlink is the averaged fitness vector; leave downlink at 'none'")
    need(cfg.error_feedback != "on", "error_feedback", "error feedback does not apply to evofed; use 'auto' or 'off'")
    need(cfg.server_momentum == 0, "server_momentum",
         "does not apply to evofed (its server step is params.optimizer); leave it at 0")
    need(cfg.server_lr == 1, "server_lr", "does not apply to evofed (use params.opt_lr); leave it at 1")
    need(cfg.model not in batchnorm_models, "model",
         f"{cfg.model!r} has BatchNorm statistics, which evofed cannot carry (it encodes parameters only); "
         "use a model without float buffers (cnn, evofed-cnn, evofed-fmnist, tiny)")
