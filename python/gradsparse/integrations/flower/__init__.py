"""Flower integration: gradsparse compression inside Flower apps (``pip install "gradsparse[flower]"``).

Two pieces, used together::

    from flwr.clientapp import ClientApp
    from flwr.serverapp.strategy import FedAvg
    from gradsparse.integrations.flower import CompressedStrategy, compression_mod

    app = ClientApp(mods=[compression_mod()])            # the train function is unchanged
    strategy = CompressedStrategy(FedAvg(), method="topk", params={"ratio": 0.01})

* :class:`CompressionMod` (``compression_mod``): a client mod; turns each train reply's
  model into a compressed update (any compressor of :mod:`gradsparse.compress`, error
  feedback kept in the node's ``Context.state``) and reports its cost in the reply metrics.
* :class:`CompressedStrategy`: wraps any Flower strategy; sends the settings, decodes each
  reply as untrusted input, sorts replies, and gives the wrapped strategy what it expects.
* :class:`EvoFedStrategy` and :class:`EvoFedMod`: EvoFed (:mod:`gradsparse.evofed`) through
  Flower, fitness vectors as the payload both ways (a strategy of its own: EvoFed replaces
  aggregation).

Payloads travel as ``Array(dtype="uint8", stype=PAYLOAD_STYPE)``. See docs/flower.md.
``gradsparse.integrations.flower.testing.LocalGrid`` runs apps in-process for tests.
"""
from __future__ import annotations

from ._flwr import SUPPORTED as FLOWER_VERSION
from .evofed import EVOFED_METRIC_KEYS, FITNESS_KEY, EvoFedMod, EvoFedStrategy
from .mod import METRIC_KEYS, RESIDUAL_KEY, CompressionMod, compression_mod
from .payload import DENSE_KEY, PAYLOAD_STYPE, UPDATE_KEY, is_payload, payload_array, payload_bytes
from .settings import Settings, derive_seed
from .strategy import CompressedStrategy

__all__ = ["CompressedStrategy", "CompressionMod", "compression_mod", "Settings", "derive_seed", "PAYLOAD_STYPE",
           "UPDATE_KEY", "DENSE_KEY", "RESIDUAL_KEY", "METRIC_KEYS", "payload_array", "payload_bytes", "is_payload",
           "FLOWER_VERSION", "EvoFedStrategy", "EvoFedMod", "FITNESS_KEY", "EVOFED_METRIC_KEYS"]
