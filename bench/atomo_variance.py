"""Variance per byte of the unbiased compressors of docs/results.md on the CNN's real updates.

    python bench/atomo_variance.py --data-dir DIR [--draws 100] [--seed 0]

The FedAvg CNN is trained for 50 mini-batch steps (batch 32, lr 0.05, momentum 0.9) on the
CIFAR-10 files in DIR; then two updates are taken: a mini-batch gradient step
(-lr * gradient, the data-parallel mode) and a one-epoch delta over 500 images (the FedAvg
mode). For each compressor, over `draws` seeds: the mean payload bytes and the normalised
variance E||Q(x) - x||^2 / ||x||^2 (the variance an unbiased estimator adds), and their product
(smaller is better: at equal bytes, the lower variance wins), and the same variance per
tensor. The bias ||E Q(x) - x|| / ||x|| is printed too (for an unbiased compressor it is
sampling noise, about sqrt(variance / draws)).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def updates(data_dir: str, seed: int):
    import torch
    from gradsparse.fl.data import ImageSet, load_cifar10
    from gradsparse.fl.models import build_model
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    tx, ty, _, _ = load_cifar10(data_dir)
    ds = ImageSet(tx, ty)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(ds), generator=gen)
    m = build_model("cnn")
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)

    def step(idx):
        x, y = ds.batch(idx, True, gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()

    for i in range(50):
        step(order[i * 32:(i + 1) * 32])
        opt.step()
    step(order[1600:1632])
    grad = {n: (-0.05 * p.grad).numpy().copy() for n, p in m.named_parameters()}
    start = {n: p.detach().clone() for n, p in m.named_parameters()}
    local = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    for i in range(2000, 2500, 32):
        x, y = ds.batch(order[i:i + 32], True, gen)
        local.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        local.step()
    delta = {n: (p.detach() - start[n]).numpy().copy() for n, p in m.named_parameters()}
    return {"gradient (data-parallel)": grad, "one-epoch delta (FedAvg)": delta}


COMPRESSORS = [("qsgd-l2", {"levels": 1, "bucket": 512}), ("qsgd-l2", {"levels": 2, "bucket": 512}),
               ("terngrad", {}), ("atomo-svd", {"ratio": 0.005}), ("atomo-svd", {"ratio": 0.01}),
               ("atomo-entry", {"ratio": 0.01}), ("qsgd", {"bits": 2})]


def main(argv=None) -> int:
    from gradsparse.compress import make_compressor
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    for what, u in updates(a.data_dir, a.seed).items():
        norm2 = sum(float(np.sum(v.astype(np.float64) ** 2)) for v in u.values())
        dense = make_compressor("none").compress(u, seed=0).nbytes
        print(f"\n{what}: d = {sum(v.size for v in u.values()):,}, dense float32 payload {dense:,} bytes")
        print("| compressor | payload bytes (mean) | E||Q(x)-x||^2 / ||x||^2 | x bytes / dense bytes | "
              "bias | compress ms | per tensor: E||Q(x_t)-x_t||^2 / ||x_t||^2 |")
        print("|---|---|---|---|---|---|---|")
        for name, params in COMPRESSORS:
            c = make_compressor(name, params)
            err, nbytes, mean, secs = 0.0, 0, {n: np.zeros(v.shape) for n, v in u.items()}, 0.0
            per = {n: 0.0 for n in u}
            for s in range(a.draws):
                t = time.perf_counter()
                out = c.compress(u, seed=s)
                secs += time.perf_counter() - t
                dec = c.decompress(out.payload, u)
                nbytes += out.nbytes
                for n in u:
                    diff = dec[n].astype(np.float64) - u[n]
                    err += float(np.sum(diff ** 2))
                    per[n] += float(np.sum(diff ** 2))
                    mean[n] += dec[n]
            var = err / a.draws / norm2
            bias = np.sqrt(sum(float(np.sum((mean[n] / a.draws - u[n]) ** 2)) for n in u) / norm2)
            b = nbytes / a.draws
            label = f"{name} " + " ".join(f"{k}={v}" for k, v in params.items())
            print(f"| {label} | {b:,.0f} | {var:.4g} | {var * b / dense:.4g} | {bias:.3g} | "
                  f"{1e3 * secs / a.draws:.1f} | "
                  + ", ".join(f"{n} {per[n] / a.draws / max(float(np.sum(u[n].astype(np.float64) ** 2)), 1e-300):.3g}"
                              for n in u) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
