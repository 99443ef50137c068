"""The EvoFed protocol object: fitness payloads up, the averaged fitness down, the same
update applied by every party."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import wire
from ..errors import ArgumentError, ArgumentTypeError
from ..selection import topk
from ..sparse import Sparse
from . import _args
from .fitness import Shaping, fitness, gradient
from .optimizers import Adam, LaggedMomentum
from .population import Population

#: accepted ``bits``: None / 32 (float32), 16 (float16), 8, 4, 2, 1 (qsgd)
BITS = (None, 32, 16, 8, 4, 2, 1)
_SERVER = 2**32  # the qsgd stream tag of the server's payload (clients are < 2^32)

Optimizer = Union[Adam, LaggedMomentum]


class EvoFed:
    """One party's copy of the EvoFed protocol; every client and the server build an
    identical one (same arguments, same seed), so the population never travels.

    A round, with global parameters ``theta`` (float32, d):

    * each client: ``payload = evo.encode(theta, theta_k - theta, round, client=k)``;
    * server: ``down = evo.aggregate(payloads, round)`` (unweighted mean over the payloads
      given, a dropped fitness value counting 0);
    * every party: ``theta = evo.step(theta, down, round)``.

    Fitness sparsification (our extension; off by default): ``keep`` sends only the
    ``keep`` largest |f| of each chunk (exact top-k through the selection engine, ties to
    the lower member); ``bits`` quantises the values sent: None or 32 = float32, 16 =
    float16, 8/4/2/1 = the wire format's unbiased stochastic ``qsgd`` with one scale per
    chunk (its rounding stream is derived from the population seed, the round and the
    client, so payloads are reproducible); ``server_keep`` re-sparsifies the mean before it
    is sent back (the downlink uses the same ``bits``). Payloads are gradsparse wire-format
    bytes: ``len(payload)`` is what travels.

    Noise scale per round: ``sigma_t = max(sigma * sigma_decay^round, sigma_min)``
    (official: constant, ``sigma_decay = 1``).

    Holds optimizer state: **not thread-safe** (one object per party, one call at a time;
    ``encode``/``decode``/``aggregate``/``selected`` do not touch the state and may run
    concurrently with each other, not with ``step`` or ``load_state_dict``).
    """

    def __init__(self, population: Population, shaping: Shaping = Shaping(),
                 optimizer: Optional[Optimizer] = None, keep: Optional[int] = None,
                 bits: Optional[int] = None, server_keep: Optional[int] = None,
                 sigma_decay: float = 1.0, sigma_min: float = 0.0):
        if not isinstance(population, Population):
            raise ArgumentTypeError(f"population: expected a Population, got {type(population).__name__}")
        if not isinstance(shaping, Shaping):
            raise ArgumentTypeError(f"shaping: expected a Shaping, got {type(shaping).__name__}")
        if optimizer is None:
            optimizer = Adam()
        if not isinstance(optimizer, (Adam, LaggedMomentum)):
            raise ArgumentTypeError(f"optimizer: expected Adam or LaggedMomentum, got {type(optimizer).__name__}")
        n = population.size
        self.population = population
        self.shaping = shaping
        self.optimizer = optimizer
        self.keep = None if keep is None else _args.integer(keep, "keep", 1, n)
        self.server_keep = None if server_keep is None else _args.integer(server_keep, "server_keep", 1, n)
        if bits is not None and (isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer))):
            raise ArgumentTypeError(f"bits: expected an int or None, got {type(bits).__name__}")
        if bits not in BITS:
            raise ArgumentError(f"bits: must be None, 32, 16, 8, 4, 2 or 1, got {bits}")
        self.bits = None if bits in (None, 32) else int(bits)
        self.sigma_decay = _args.real(sigma_decay, "sigma_decay", lo=0.0, hi=1.0, lo_open=True)
        self.sigma_min = _args.real(sigma_min, "sigma_min", lo=0.0)

    # ------------------------------------------------------------------ presets

    @classmethod
    def official(cls, name: str, seed: int = 0) -> "EvoFed":
        """The settings of the official EvoFed code (mahi97/EvoFL), labelled as such:

        * ``"fmnist"``: N = 128, sigma = 0.35 (constant), P = 1, z-score shaping,
          w = 0.0152, Adam (lr 0.04266 x 0.999 per round, floor 0.001, b1 = 0.99);
        * ``"cifar"``: N = 32, sigma = 0.4204 (constant), P = 200 with the noise block
          shared by every chunk, centred ranks then z-score (no tiers), w = 0.0692,
          SGD-momentum 0.479 with one round of lag, lr 0.0467.

        Differences that remain: no zero padding (chunks are ``c*d//P`` boundaries), the
        project's own generator, a std of 0 gives zeros (see :class:`Shaping`)."""
        if name == "fmnist":
            return cls(Population(128, 0.35, seed=seed), Shaping(zscore=True, weight=0.0152), Adam())
        if name == "cifar":
            return cls(Population(32, 0.4204, seed=seed, partitions=200, shared_noise=True),
                       Shaping(centered_ranks=True, zscore=True, weight=0.0692), LaggedMomentum())
        raise ArgumentError(f"name: expected 'fmnist' or 'cifar', got {name!r}")

    # ------------------------------------------------------------------ schedule

    def sigma(self, round: int) -> float:
        """sigma_t = max(sigma * sigma_decay^round, sigma_min)."""
        round = _args.round_number(round)
        s = self.population.sigma * self.sigma_decay ** round if self.sigma_decay != 1.0 else self.population.sigma
        return max(s, self.sigma_min)

    def population_at(self, round: int) -> Population:
        """The population of `round` (its sigma_t)."""
        return self.population.with_sigma(self.sigma(round))

    # ------------------------------------------------------------------ payloads

    def _payload(self, F: np.ndarray, round: int, tag: int, keep: Optional[int]) -> bytes:
        p, n = F.shape
        values = F.astype(np.float32)
        if keep is None or keep == n:
            item: Any = values
            block = n
        else:
            vals, idx = topk(values, keep, dim=-1, key="abs", sorted=False)
            flat = (idx + (np.arange(p, dtype=np.int64) * n)[:, None]).ravel()
            item = Sparse(flat, np.ascontiguousarray(vals).ravel(), (p, n))
            block = keep
        if self.bits is None:
            return wire.encode(item, value_codec="float32")
        if self.bits == 16:
            return wire.encode(item, value_codec="float16")
        seed = _args.mix(self.population.seed, round, tag)
        return wire.encode(item, value_codec="qsgd", bits=self.bits, block=block, seed=seed)

    def encode(self, theta: Any, delta: Any, round: int, client: int = 0) -> bytes:
        """Client `client`'s fitness payload for its update `delta` (d,) = theta_k - theta."""
        return self.encode_many(theta, _args.array(delta, "delta"), round, first_client=client)[0]

    def encode_many(self, theta: Any, deltas: Any, round: int, first_client: int = 0) -> List[bytes]:
        """The payloads of several clients at once (`deltas` (K, d) or (d,), clients
        ``first_client ...``): one pass over the noise serves them all (simulations).
        Equal to calling :meth:`encode` per client."""
        round = _args.round_number(round)
        first_client = _args.integer(first_client, "client", 0, _SERVER - 1)
        deltas = _args.array(deltas, "deltas", ndims=(1, 2))
        deltas = deltas.reshape(-1, deltas.shape[-1])
        theta = _args.array(theta, "theta", cols=deltas.shape[1])
        if first_client + deltas.shape[0] > _SERVER:
            raise ArgumentError(f"client: client numbers must stay below 2^32, got {first_client} + {deltas.shape[0]}")
        F = fitness(self.population_at(round), round, deltas, theta, self.shaping)
        return [self._payload(F[k], round, first_client + k, self.keep) for k in range(F.shape[0])]

    def _read(self, payload: Any, name: str) -> Tuple[np.ndarray, int]:
        """(dense float64 (P, N), values carried) of a payload, validated."""
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise ArgumentTypeError(f"{name}: expected bytes, got {type(payload).__name__}")
        try:
            item = wire.decode(payload)
        except (ArgumentError, ArgumentTypeError) as e:
            raise ArgumentError(f"{name}: not a valid fitness payload ({e})") from None
        shape = (self.population.partitions, self.population.size)
        if isinstance(item, dict):
            raise ArgumentError(f"{name}: holds {len(item)} named tensors, expected one fitness tensor")
        if tuple(item.shape) != shape:
            raise ArgumentError(f"{name}: fitness of shape {tuple(item.shape)}, expected {shape}")
        if isinstance(item, Sparse):
            count = item.nnz
            values = item.values
        else:
            count = item.size
            values = item
        if not np.isfinite(values).all():
            raise ArgumentError(f"{name}: fitness values contain NaN or infinity")
        dense = item.to_dense() if isinstance(item, Sparse) else item
        return np.asarray(dense, dtype=np.float64), int(count)

    def decode(self, payload: Any) -> np.ndarray:
        """The fitness (P, N) float64 in a payload (dropped values are 0). Untrusted input:
        anything malformed, of another shape or non-finite raises ArgumentError naming
        `payload`."""
        return self._read(payload, "payload")[0]

    def selected(self, payload: Any) -> int:
        """The number of fitness values a payload carries (P*N when dense)."""
        return self._read(payload, "payload")[1]

    def aggregate(self, payloads: Sequence[Any], round: int) -> bytes:
        """The server's payload for `round`: the unweighted mean of the clients' fitness
        (a value a client dropped counts 0), re-sparsified to ``server_keep`` per chunk
        when set, in the same value codec as the uplink."""
        round = _args.round_number(round)
        if isinstance(payloads, (bytes, bytearray, memoryview, str)) or not isinstance(payloads, Sequence):
            raise ArgumentTypeError("payloads: expected a list of payloads")
        if not payloads:
            raise ArgumentError("payloads: empty (at least one client payload is needed)")
        total = np.zeros((self.population.partitions, self.population.size))
        for i, p in enumerate(payloads):
            total += self._read(p, f"payloads[{i}]")[0]
        return self._payload(total / len(payloads), round, _SERVER, self.server_keep)

    # ------------------------------------------------------------------ update

    def gradient(self, payload: Any, round: int, d: int) -> np.ndarray:
        """The estimate g (float32, d) that the server payload of `round` encodes."""
        return gradient(self.population_at(round), round, self.decode(payload), d)

    def step(self, theta: Any, payload: Any, round: int) -> np.ndarray:
        """Every party: the new theta (float32) from the server payload of `round` --
        ``g`` from the averaged fitness, then one optimizer step."""
        theta = _args.array(theta, "theta")
        g = self.gradient(payload, round, theta.size)
        return self.optimizer.step(theta, g)

    def state_dict(self) -> Dict[str, Any]:
        """The optimizer state (the only state; for checkpoints)."""
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Any) -> None:
        """Restores :meth:`state_dict` (ArgumentError naming `state` if it does not fit)."""
        if not isinstance(state, dict) or set(state) != {"optimizer"}:
            raise ArgumentError("state: expected {'optimizer': ...} from EvoFed.state_dict()")
        self.optimizer.load_state_dict(state["optimizer"])
