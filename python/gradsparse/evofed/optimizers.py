"""The server-side optimizers of the official EvoFed code, applied by every party to the
same estimate g (so all copies of theta stay bit-identical). Elementwise, so the
official per-chunk optimizer state is the same as one state over all d parameters.

Both hold state (not thread-safe: one optimizer per party, one step at a time). State is
float32 (d,) arrays plus a step counter; ``state_dict``/``load_state_dict`` round-trip it.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from ..errors import ArgumentError, ArgumentTypeError
from . import _args


class _Optimizer:
    _kind = ""
    _buffers: tuple = ()

    def __init__(self):
        self.steps = 0
        for name in self._buffers:
            setattr(self, name, None)

    def _check(self, theta: Any, g: Any):
        theta = _args.array(theta, "theta")
        g = _args.array(g, "g", cols=theta.size)
        for name in self._buffers:
            buf = getattr(self, name)
            if buf is not None and buf.size != theta.size:
                raise ArgumentError(f"theta: has {theta.size} values, the optimizer state {buf.size}")
        return theta, g

    def state_dict(self) -> Dict[str, Any]:
        """A copy of the state: ``{"kind", "steps", <buffers>}`` (buffers None before the
        first step)."""
        state: Dict[str, Any] = {"kind": self._kind, "steps": self.steps}
        for name in self._buffers:
            buf = getattr(self, name)
            state[name] = None if buf is None else buf.copy()
        return state

    def load_state_dict(self, state: Any) -> None:
        """Restores a state from :meth:`state_dict` (checked; ArgumentError naming `state`)."""
        if not isinstance(state, dict):
            raise ArgumentTypeError(f"state: expected a dict, got {type(state).__name__}")
        expected = {"kind", "steps", *self._buffers}
        if set(state) != expected:
            raise ArgumentError(f"state: expected the keys {sorted(expected)}, got {sorted(state)}")
        if state["kind"] != self._kind:
            raise ArgumentError(f"state: is a {state['kind']!r} state, not {self._kind!r}")
        steps = _args.integer(state["steps"], "state['steps']", 0, 2**63 - 1)
        bufs = {}
        for name in self._buffers:
            v = state[name]
            bufs[name] = None if v is None else _args.array(v, f"state[{name!r}]").copy()
        present = {b.size for b in bufs.values() if b is not None}
        if len(present) > 1 or (present and any(b is None for b in bufs.values())):
            raise ArgumentError("state: buffers missing or of different sizes")
        self.steps = steps
        for name, v in bufs.items():
            setattr(self, name, v)


class Adam(_Optimizer):
    """Adam as in the official plain variant (evosax): with t = steps + 1,
    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``theta -= lr_t * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``,
    and the learning rate decays every step: ``lr_t = max(lr * decay^steps, lr_min)``.
    Defaults: the official FMNIST settings (lr 0.04266, b1 = 0.99, b2 = 0.999, eps 1e-8,
    decay 0.999 per round to 0.001). Arithmetic and state in float32."""

    _kind = "adam"
    _buffers = ("m", "v")

    def __init__(self, lr: float = 0.04266, beta1: float = 0.99, beta2: float = 0.999,
                 eps: float = 1e-8, decay: float = 0.999, lr_min: float = 0.001):
        super().__init__()
        self.lr = _args.real(lr, "lr", lo=0.0, lo_open=True)
        self.beta1 = _args.real(beta1, "beta1", lo=0.0, hi=1.0)
        self.beta2 = _args.real(beta2, "beta2", lo=0.0, hi=1.0)
        if self.beta1 == 1.0 or self.beta2 == 1.0:
            raise ArgumentError("beta1, beta2: must be < 1")
        self.eps = _args.real(eps, "eps", lo=0.0, lo_open=True)
        self.decay = _args.real(decay, "decay", lo=0.0, hi=1.0, lo_open=True)
        self.lr_min = _args.real(lr_min, "lr_min", lo=0.0)

    def learning_rate(self, steps: Optional[int] = None) -> float:
        """The learning rate of step number `steps` (default: the next step)."""
        t = self.steps if steps is None else _args.integer(steps, "steps", 0, 2**63 - 1)
        return max(self.lr * self.decay ** t, self.lr_min)

    def step(self, theta: Any, g: Any) -> np.ndarray:
        """The new theta (float32) after one step along the gradient estimate `g`."""
        theta, g = self._check(theta, g)
        if self.m is None:
            self.m = np.zeros_like(theta)
            self.v = np.zeros_like(theta)
        t = self.steps + 1
        b1, b2 = np.float32(self.beta1), np.float32(self.beta2)
        m = b1 * self.m + (np.float32(1) - b1) * g
        v = b2 * self.v + (np.float32(1) - b2) * (g * g)
        mhat = m / np.float32(1.0 - self.beta1 ** t)
        vhat = v / np.float32(1.0 - self.beta2 ** t)
        new = theta - np.float32(self.learning_rate()) * mhat / (np.sqrt(vhat) + np.float32(self.eps))
        self.m, self.v, self.steps = m, v, t
        return new


class LaggedMomentum(_Optimizer):
    """SGD with momentum applied with one round of lag, as in the official partitioned
    variant: ``theta -= lr * m_old``, then ``m = g + momentum * m_old`` (so the first step
    leaves theta unchanged). Defaults: the official CIFAR settings (lr 0.0467,
    momentum 0.479). Arithmetic and state in float32."""

    _kind = "lagged_momentum"
    _buffers = ("m",)

    def __init__(self, lr: float = 0.0467, momentum: float = 0.479):
        super().__init__()
        self.lr = _args.real(lr, "lr", lo=0.0, lo_open=True)
        self.momentum = _args.real(momentum, "momentum", lo=0.0, hi=1.0)

    def step(self, theta: Any, g: Any) -> np.ndarray:
        """The new theta (float32); the momentum then absorbs `g`."""
        theta, g = self._check(theta, g)
        if self.m is None:
            self.m = np.zeros_like(theta)
        new = theta - np.float32(self.lr) * self.m
        self.m = g + np.float32(self.momentum) * self.m
        self.steps += 1
        return new
