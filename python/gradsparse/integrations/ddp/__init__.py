"""A DistributedDataParallel communication hook: exact sparse selection with error feedback,
fused in C++, sent by the cheapest of three traffic schemes.

Usage::

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from gradsparse.integrations.ddp import TopKState, topk_hook

    model = DDP(net)                                  # gloo and CPU tensors, or NCCL and CUDA
    state = TopKState(ratio=0.01, module=model)       # 1% of each bucket per rank
    model.register_comm_hook(state, topk_hook)

Per bucket (DDP's flat buffer of several parameters' gradients) and step, on every rank:

1. **One fused pass** (``ErrorFeedback.compress_into``, the compression layer's fused error
   feedback): e += g, the exact selection of the method (top-k by magnitude, CWMP, threshold)
   over e, the selected (value, int32 index) pairs written into the bucket's persistent send
   buffer (values float32, or bfloat16 with ``value_dtype="bfloat16"``), and e keeps what was
   not sent (exactly: 0 where a float32 value was sent, the rounding error where a bfloat16
   one was). No buffer of the bucket's size is allocated per step.
2. **One of three schemes**, chosen per bucket by an alpha-beta link model (``link.py``;
   alpha and beta measured once at the first step by `measure_link`, or given), the same
   choice on every rank:

   * ``allgather``: every rank's k pairs to every rank -- (W-1) k pairs received per rank;
   * ``dense``: each rank writes its pairs / W into the zeroed output and the outputs are
     all-reduced -- the dense bucket's traffic, chosen when the union of W k pairs would
     cost more (SparCML's switch);
   * ``split`` (bounded volume, after Ok-Topk's split-and-reduce): the bucket is cut into W
     regions of ceil(n / W) elements; each rank keeps the best ceil(k / W) of each region
     (instead of its best k overall -- the re-selection changes which pairs a rank sends,
     what it does not send stays in its residual) and sends region r's to rank r
     (all-to-all); rank r sums them in rank order, keeps the best ceil(k / W) of the sum
     (what it drops stays in a residual of its region, added to the next step's sum:
     nothing is lost) and all-gathers them. Each rank sends about 2 (W-1) ceil(k / W) pairs,
     whatever W; the update has at most W ceil(k / W) non-zeros.

   Every size is fixed by (n, k, W), which every rank knows: no size exchange, one
   collective per bucket (two for split, the second on a process group of its own per
   bucket, so callbacks of several buckets never interleave on one group). Each payload
   starts with (n, count): a count over the bound (a threshold that selected more than the
   payload carries) makes every rank raise the same error.
3. **The combine** writes the received pairs / W, in rank order, into the bucket's
   persistent output (``gradsparse.compress.scatter_mean``), after re-zeroing only the
   positions the last combine wrote. DDP reads the returned tensor once, when it copies it
   into the gradients at the end of the backward pass, before the next step's hook for the
   bucket can write it again -- so reusing it is safe. Every rank computes the same bits.

Also:

* ``start_iter`` iterations (default 1) run DDP's plain averaging first (DDP rebuilds its
  buckets after the first iteration).
* The settings are compared across ranks at the first step (one blocking all-gather, once):
  ranks that disagree (k, ratio, scheme, ...) all raise the same error naming the settings.
* Threads: the selection uses ``torch.get_num_threads()`` (or ``threads=``, never more).
* Residuals: float32 for float32 buckets (the fused path, every setting); float16, bfloat16
  and float64 buckets take the layer's generic error feedback (top-k, allgather or dense).
  They follow the parameters through DDP's bucket rebuild, and ``state_dict()`` /
  ``load_state_dict()`` save and restore them by parameter name with the training
  checkpoint (each rank its own; another world size is refused).
* Devices: a CPU bucket runs the C++ pass over gloo; a float32 CUDA bucket runs the same
  pass on its GPU (``gradsparse.cuda``, built with ``GRADSPARSE_CUDA=ON``; residuals,
  payloads and output on the device) over NCCL or gloo, with the ``allgather`` and
  ``dense`` schemes (``split`` is refused there and ``auto`` leaves it out). Other CUDA
  dtypes, a CPU bucket on NCCL and other devices raise an error naming the bucket
  (``gpu.py``; docs/ddp.md, "On GPUs (NCCL)").
* ``state.sent_bytes`` counts the bytes this rank sent (the ring model of each collective),
  ``state.dense_bytes`` those plain DDP's all-reduce would have sent,
  ``state.schemes_used`` the scheme of every bucket-step.

docs/ddp.md has the measured step times and a guide to the settings.
"""
from .hook import local_pass, topk_hook
from .link import Link, measure_link, scheme_costs
from .state import TopKState

__all__ = ["TopKState", "topk_hook", "local_pass", "Link", "measure_link", "scheme_costs"]
