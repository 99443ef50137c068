"""gradsparse.fl: a thin federated-learning harness (FedAvg on non-IID CIFAR-10) with
pluggable compressors, an energy model, exact byte accounting and resumable runs.

torch is needed to *run* experiments; configuration, the compressor registry, the energy
model and plotting of existing records work without it. ``import gradsparse`` does not
import this package. Command line: ``python -m gradsparse.fl run|sweep|plot|summary``.
"""
from __future__ import annotations

from ..compress import Compressor, available_compressors, make_compressor, register
from .config import Config, load_config, parse_overrides
from .energy import load_profile, profile_names, tensor_costs

__all__ = ["Config", "Compressor", "available_compressors", "load_config", "load_profile", "make_compressor",
           "parse_overrides", "profile_names", "register", "run", "tensor_costs"]


def run(cfg: Config, *, resume: bool = False, log=print) -> str:
    """Runs (or resumes, with ``resume=True``) the experiment on the engine ``cfg.engine``
    names (``builtin``, or ``flower``: Flower's simulation engine); returns its run directory."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ImportError("gradsparse.fl needs torch to run experiments: pip install 'gradsparse[fl]'") from None
    if cfg.engine == "flower":
        from .flower_engine import FlowerSimulation as engine
    else:
        from .simulation import Simulation as engine
    return engine(cfg, log=log).run(resume=resume)
