"""Integrations with the engines people scale out on.

- :mod:`gradsparse.integrations.ddp`: a PyTorch DistributedDataParallel communication hook
  that sends each gradient bucket's exact top-k (with error feedback) instead of the dense
  bucket.

Nothing here is imported by ``import gradsparse``; each module imports its engine (torch)
when it is imported itself.
"""
