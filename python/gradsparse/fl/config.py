"""Run configuration: one flat, validated dataclass.

A config comes from defaults, then a JSON (or, on Python >= 3.11, TOML) file, then
command-line overrides ``key=value``. :func:`Config.validate` checks everything before any
data is loaded or any model is built, so a bad setting fails in milliseconds with a
``ValueError`` that names the setting.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional
from ..errors import ArgumentError
from . import evofed_params

__all__ = ["Config", "load_config", "parse_overrides", "DATA_SOURCES", "PARTITIONS", "MODELS", "MODES", "ENGINES",
           "DATA_SHAPES", "MODEL_INPUTS"]

DATA_SOURCES = ("cifar10", "synthetic", "fmnist")
PARTITIONS = ("dirichlet", "shards", "iid", "class-pairs")
MODELS = ("cnn", "resnet18", "tiny", "evofed-cnn", "evofed-fmnist")
#: the (channels, height, width) of one image of each data source
DATA_SHAPES = {"cifar10": (3, 32, 32), "synthetic": (3, 32, 32), "fmnist": (1, 28, 28)}
#: the image shape each model takes (None: any; ``tiny`` adapts its input channels)
MODEL_INPUTS = {"cnn": (3, 32, 32), "resnet18": (3, 32, 32), "tiny": None, "evofed-cnn": (3, 32, 32),
                "evofed-fmnist": (1, 28, 28)}
BATCHNORM_MODELS = ("resnet18",)  #: models with float buffers (BatchNorm statistics)
NUM_CLASSES = 10                   #: classes of every data source
MODES = ("fedavg", "gradient")
ENGINES = ("builtin", "flower")   #: what runs the rounds (the records are the same)


@dataclass
class Config:
    # --- data
    data: str = "cifar10"                 #: "cifar10" (python-format files or torchvision), "fmnist" (IDX files or torchvision) or "synthetic"
    data_dir: Optional[str] = None        #: folder holding cifar-10-batches-py / the Fashion-MNIST IDX files (or their parent)
    download: bool = False                #: let torchvision download CIFAR-10 / Fashion-MNIST into data_dir
    normalize: bool = True                #: per-channel mean/std normalisation
    augment: bool = True                  #: random crop (pad 4) + horizontal flip while training (never for fmnist)
    synthetic_train: int = 2000           #: synthetic data: training images
    synthetic_test: int = 500             #: synthetic data: test images
    train_limit: int = 0                  #: use only the first N training images (0: all)
    test_limit: int = 0                   #: evaluate on the first N test images (0: all)
    val_fraction: float = 0.1             #: training images held out (stratified) for model selection; 0: none
    # --- partition
    partition: str = "dirichlet"          #: "dirichlet", "shards", "iid" or "class-pairs" (EvoFed's split)
    num_clients: int = 10
    alpha: float = 0.5                    #: Dirichlet concentration (smaller: more skewed)
    min_partition_size: int = 10          #: Dirichlet: resample until every client has this many
    shards_per_client: int = 2            #: shards: classes (shards) per client
    partition_seed: int = -1              #: seed of the partition and validation split (-1: seed)
    # --- model and local training
    model: str = "cnn"                    #: "cnn", "resnet18", "tiny", "evofed-cnn" or "evofed-fmnist"
    mode: str = "fedavg"                  #: "fedavg" (local epochs, deltas) or "gradient" (one mini-batch gradient per client and round)
    rounds: int = 20
    client_fraction: float = 1.0          #: fraction of clients sampled per round
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    server_lr: float = 1.0
    server_momentum: float = 0.0
    # --- compression
    method: str = "topk"                  #: a compressor name (see gradsparse.compress) or "evofed"
    params: Dict[str, Any] = field(default_factory=dict)  #: the compressor's (or evofed's) parameters
    error_feedback: str = "auto"          #: "auto" (biased methods only), "on" or "off"
    downlink: str = "none"                #: downlink compressor ("none": dense float32)
    downlink_params: Dict[str, Any] = field(default_factory=dict)
    # --- energy
    energy_profile: str = "edge-45nm"     #: a profile name from energy_profiles.json
    energy_overrides: Dict[str, float] = field(default_factory=dict)
    client_profiles: List[str] = field(default_factory=list)  #: per-client device profiles (client c: [c % len]); []: energy_profile
    # --- bookkeeping
    seed: int = 0
    eval_every: int = 1
    eval_batch_size: int = 500
    last_k: int = 5                       #: rounds averaged for the last-k accuracy of the result line
    threads: int = 0                      #: torch threads (0: cores - 1, at most 4; resumed: the run's own)
    out_dir: str = "runs"
    run_name: str = ""                    #: run directory name (default: derived from the config)
    progress: str = "auto"                #: tqdm bars: "auto" (only on a terminal), "on", "off"
    checkpoint: str = "delete"            #: "delete" checkpoint.pt when the run finishes, or "keep" it
    checkpoint_every: int = 1             #: rounds between checkpoints (a resume repeats the rounds since the last)
    engine: str = "builtin"               #: "builtin" (the in-process loop) or "flower" (Flower's simulation engine on Ray; docs/fl.md)

    # ------------------------------------------------------------------ validation
    def validate(self) -> "Config":
        """Checks every setting; raises ValueError naming the first bad one. Returns self."""
        from ..compress import check_compressor  # no torch needed

        def need(cond: bool, name: str, msg: str) -> None:
            if not cond:
                raise ArgumentError(f"{name}: {msg}")

        def integer(name: str, lo: int) -> None:
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool), name, f"expected an integer, got {v!r}")
            need(v >= lo, name, f"must be >= {lo}, got {v}")

        def real(name: str) -> float:
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and not isinstance(v, bool), name, f"expected a number, got {v!r}")
            need(math.isfinite(float(v)), name, f"must be finite, got {v}")
            return float(v)

        need(self.data in DATA_SOURCES, "data", f"expected one of {', '.join(DATA_SOURCES)}, got {self.data!r}")
        need(self.partition in PARTITIONS, "partition", f"expected one of {', '.join(PARTITIONS)}, got {self.partition!r}")
        need(self.model in MODELS, "model", f"expected one of {', '.join(MODELS)}, got {self.model!r}")
        takes = MODEL_INPUTS[self.model]
        need(takes is None or takes == DATA_SHAPES[self.data], "model",
             f"{self.model!r} takes {'x'.join(map(str, takes or ()))} (CxHxW) images, but data {self.data!r} has "
             f"{'x'.join(map(str, DATA_SHAPES[self.data]))}; models for it: "
             f"{', '.join(m for m, t in MODEL_INPUTS.items() if t in (None, DATA_SHAPES[self.data]))}")
        for name in ("synthetic_train", "synthetic_test", "num_clients", "rounds", "local_epochs",
                     "batch_size", "eval_every", "eval_batch_size", "shards_per_client", "last_k", "checkpoint_every"):
            integer(name, 1)
        for name in ("train_limit", "test_limit", "min_partition_size", "threads", "seed"):
            integer(name, 0)
        need(isinstance(self.partition_seed, int) and not isinstance(self.partition_seed, bool)
             and self.partition_seed >= -1, "partition_seed", f"expected an integer >= -1, got {self.partition_seed!r}")
        need(self.mode in MODES, "mode", f"expected one of {', '.join(MODES)}, got {self.mode!r}")
        need(self.engine in ENGINES, "engine", f"expected one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine == "flower":
            # the harness sends every client the round's downlink (compressed model change,
            # aggregated fitness); Flower's wrapper and EvoFedStrategy send each sampled node
            # the rounds it missed: other bytes and energy, so not the same records
            need(self.method != evofed_params.METHOD, "engine",
                 "the evofed method runs on the builtin engine only (it sends the aggregated fitness to every "
                 "client each round; in a Flower app of your own use gradsparse.integrations.flower's "
                 "EvoFedStrategy, docs/flower.md)")
            need(self.downlink == "none" and not self.downlink_params, "engine",
                 "downlink compression runs on the builtin engine only (it charges every client each round's "
                 "broadcast; the flower engine sends the sampled clients the dense model)")
        need(self.checkpoint in ("delete", "keep"), "checkpoint", f"expected 'delete' or 'keep', got {self.checkpoint!r}")
        v = real("val_fraction")
        need(0 <= v < 1, "val_fraction", f"must be in [0, 1), got {v}")
        need(real("alpha") > 0, "alpha", f"must be > 0, got {self.alpha}")
        f = real("client_fraction")
        need(0 < f <= 1, "client_fraction", f"must be in (0, 1], got {f}")
        need(real("lr") > 0, "lr", f"must be > 0, got {self.lr}")
        need(0 <= real("momentum") < 1, "momentum", f"must be in [0, 1), got {self.momentum}")
        need(real("weight_decay") >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        need(real("server_lr") > 0, "server_lr", f"must be > 0, got {self.server_lr}")
        need(0 <= real("server_momentum") < 1, "server_momentum", f"must be in [0, 1), got {self.server_momentum}")
        need(self.error_feedback in ("auto", "on", "off"), "error_feedback",
             f"expected 'auto', 'on' or 'off', got {self.error_feedback!r}")
        need(self.progress in ("auto", "on", "off"), "progress", f"expected 'auto', 'on' or 'off', got {self.progress!r}")
        need(isinstance(self.params, dict), "params", "expected a dict of compressor parameters")
        need(isinstance(self.downlink_params, dict), "downlink_params", "expected a dict of compressor parameters")
        if self.method == evofed_params.METHOD:
            evofed_params.resolve(self.params)
            evofed_params.check_config(self, BATCHNORM_MODELS)
        else:
            check_compressor(self.method, self.params, "method")
        if self.partition == "class-pairs":
            need(self.num_clients <= NUM_CLASSES, "num_clients",
                 f"the class-pairs partition gives each client the classes c with c mod num_clients == i: "
                 f"at most {NUM_CLASSES} clients, got {self.num_clients}")
        check_compressor(self.downlink, self.downlink_params, "downlink")
        from .energy import load_profile
        load_profile(self.energy_profile, self.energy_overrides)  # raises on a bad name/override
        need(isinstance(self.client_profiles, list) and all(isinstance(p, str) for p in self.client_profiles),
             "client_profiles", f"expected a list of profile names, got {self.client_profiles!r}")
        for p in self.client_profiles:
            try:
                load_profile(p, self.energy_overrides)
            except ValueError as e:
                raise ArgumentError(f"client_profiles: {e}") from None
        if self.data == "cifar10":
            from .data import check_cifar_source
            check_cifar_source(self.data_dir, self.download)
        elif self.data == "fmnist":
            from .data import check_fmnist_source
            check_fmnist_source(self.data_dir, self.download)
        need(isinstance(self.out_dir, str) and self.out_dir != "", "out_dir", "expected a folder name")
        need(isinstance(self.run_name, str) and "/" not in self.run_name and self.run_name not in (".", ".."),
             "run_name", f"expected a plain folder name, got {self.run_name!r}")
        return self

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def experiment_settings(self) -> Dict[str, Any]:
        """The fields that define the experiment (not bookkeeping), compressor parameters
        with their defaults resolved; the data folder is left out (data are identified by
        content in experiment.json)."""
        return {k: v for k, v in self.resolved().to_dict().items() if k not in self.NON_EXPERIMENT}

    def resolved(self) -> "Config":
        """This config with the compressors' (or evofed's) parameters resolved (defaults filled
        in), and ``augment`` false for data that are never augmented (fmnist): what
        config.json holds."""
        from ..compress import make_compressor
        down = (make_compressor(self.downlink, self.downlink_params).settings()
                if self.downlink != "none" or self.downlink_params else dict(self.downlink_params))
        params = (evofed_params.resolve(self.params) if self.method == evofed_params.METHOD
                  else make_compressor(self.method, self.params).settings())
        augment = self.augment and self.data != "fmnist"
        return self.replace(params=params, downlink_params=down, augment=augment)

    def settings_hash(self, with_seed: bool = True) -> str:
        """16 hex digits of SHA-256 over :meth:`experiment_settings` (without the seed when
        `with_seed` is False)."""
        d = self.experiment_settings()
        if not with_seed:
            d.pop("seed")
        return digest(d)

    def name_hash(self) -> str:
        """The hash in the default run name: the experiment without the thread count (which
        a sweep sets and a resume checks against config.json)."""
        d = self.experiment_settings()
        d.pop("threads")
        return digest(d)

    def default_run_name(self) -> str:
        """A readable name -- method, its given parameters, model, partition, lr, profile,
        seed -- and 8 hex digits of the experiment's hash, so that two experiments that
        differ in any setting never share a directory."""
        parts = [self.method]
        for k in sorted(self.params):
            parts.append(f"{k}{self.params[k]}")
        part = f"dir{self.alpha:g}" if self.partition == "dirichlet" else self.partition
        parts += [self.model, part, f"c{self.num_clients}", f"lr{self.lr:g}", self.energy_profile, f"s{self.seed}",
                  self.name_hash()[:8]]
        return "-".join(str(p).replace("/", "_").replace(" ", "") for p in parts)

    def run_dir(self) -> str:
        return os.path.join(self.out_dir, self.run_name or self.default_run_name())

    # Fields whose change does not change the experiment (a resumed run may differ in them).
    # Not `threads`: torch's thread count changes its numerics, so a run is resumed with the
    # count it started with (0 there: the run's recorded count; see Simulation._check_dir).
    # `engine` is one: both engines write the same records (experiment.json says which ran).
    NON_EXPERIMENT = ("out_dir", "run_name", "progress", "rounds", "data_dir", "download", "checkpoint",
                      "checkpoint_every", "eval_batch_size", "last_k", "engine")


def digest(obj: Any) -> str:
    """16 hex digits of SHA-256 over the canonical JSON of `obj` (sorted keys, no spaces;
    values JSON cannot hold are written as text): the keys of experiments and settings."""
    import hashlib
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def experiment_keys(setting: Mapping[str, Any]) -> Dict[str, str]:
    """``setting_key`` (the setting without its seed: equal for the seeds of one experiment)
    and ``run_key`` (with it) of an experiment.json ``setting``."""
    return {"setting_key": digest({k: v for k, v in setting.items() if k != "seed"}), "run_key": digest(dict(setting))}


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _coerce(name: str, text: str) -> Any:
    """Turns an override's text into the field's type."""
    default = _FIELDS[name].default
    if default is dataclasses.MISSING:  # dict fields use a default_factory
        default = {}
    if isinstance(default, bool):
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ArgumentError(f"{name}: expected true or false, got {text!r}")
    if isinstance(default, list) or name == "client_profiles":
        items = [t.strip() for t in text.split(",") if t.strip()]
        return items
    if isinstance(default, dict):
        try:
            v = json.loads(text)
        except json.JSONDecodeError:
            raise ArgumentError(f"{name}: expected a JSON object, got {text!r}") from None
        if not isinstance(v, dict):
            raise ArgumentError(f"{name}: expected a JSON object, got {text!r}")
        return v
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ArgumentError(f"{name}: expected an integer, got {text!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ArgumentError(f"{name}: expected a number, got {text!r}") from None
    if text.lower() in ("none", "null") and default is None:
        return None
    return text


def _value(text: str) -> Any:
    """A compressor parameter's value: JSON when it parses, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(items: Iterable[str]) -> Dict[str, Any]:
    """``["rounds=5", "params.ratio=0.01"]`` -> a dict of changes (``params.x`` sets one
    compressor parameter, ``energy_overrides.x`` one profile constant)."""
    out: Dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ArgumentError(f"override {item!r}: expected key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if "." in key:
            head, sub = key.split(".", 1)
            if head not in ("params", "downlink_params", "energy_overrides"):
                raise ArgumentError(f"override {item!r}: unknown setting {head!r}")
            out.setdefault(head, {})[sub] = _value(text)
            continue
        if key not in _FIELDS:
            raise ArgumentError(f"override {item!r}: unknown setting {key!r}")
        out[key] = _coerce(key, text)
    return out


def _read_file(path: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise ArgumentError(f"config: no such file {path!r}")
    with open(path, "rb") as fh:
        raw = fh.read()
    if path.endswith(".toml"):
        try:
            import tomllib  # Python >= 3.11
        except ImportError:  # pragma: no cover - old Pythons
            raise ArgumentError("config: TOML needs Python >= 3.11; use a JSON file") from None
        data = tomllib.loads(raw.decode("utf-8"))
    else:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ArgumentError(f"config: {path!r} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ArgumentError(f"config: {path!r} must hold an object of settings")
    return data


def load_config(path: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None,
                base: Optional[Config] = None) -> Config:
    """Defaults (or `base`), then the settings of file `path`, then `overrides`; validated."""
    values: Dict[str, Any] = dataclasses.asdict(base) if base is not None else {}
    merged: Dict[str, Any] = {}
    if path is not None:
        merged.update(_read_file(path))
    for k, v in (overrides or {}).items():
        if k in ("params", "downlink_params", "energy_overrides") and isinstance(v, dict):
            merged[k] = {**merged.get(k, values.get(k, {})), **v}
        else:
            merged[k] = v
    unknown = sorted(set(merged) - set(_FIELDS))
    if unknown:
        raise ArgumentError(f"config: unknown setting(s) {', '.join(map(repr, unknown))}")
    values.update(merged)
    return Config(**values).validate()
