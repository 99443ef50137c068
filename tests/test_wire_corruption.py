"""Corrupted payloads: `gradsparse.decode` treats its input as untrusted, so any mutation of
a valid payload must either raise ValueError or decode to something well-formed (sparse
indices int64, strictly increasing and inside the shape; as many values as indices).

The mutation loop runs in a subprocess, so a crash (a segfault or an abort in the C++
decoder) fails this test instead of taking pytest down with it. Mutations are seeded and
the CRC32C of the body is re-fixed in half of the cases, so most of them get past the
checksum into the record and section decoders. The C++ fuzzer in tests/fuzz/ does the same
at a much larger scale under sanitizers.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

MUTATIONS = 120_000

SCRIPT = textwrap.dedent(
    r"""
    import random, struct, sys
    import numpy as np
    import gradsparse as gs
    from gradsparse import _core

    N = int(sys.argv[1])
    rng = np.random.default_rng(20240611)

    def sparse(shape, k, dtype=np.float32):
        n = int(np.prod(shape))
        idx = np.sort(rng.choice(n, size=min(k, n), replace=False)).astype(np.int64)
        vals = (rng.standard_normal(idx.size) * 3).astype(dtype)
        return gs.Sparse(idx, vals, shape)

    # (update, encode options): every index and value codec, single and multi-tensor.
    cases = [
        (sparse((1000,), 40), dict(index_codec="raw32", value_codec="float32")),
        (sparse((50, 40), 100, np.float64), dict(index_codec="raw64", value_codec="float64")),
        (sparse((5000,), 300), dict(index_codec="varint", value_codec="float16")),
        (sparse((1 << 20,), 64), dict(index_codec="rice", value_codec="bfloat16")),
        (sparse((300,), 120, np.float16), dict(index_codec="bitmap", value_codec="qsgd", bits=4, block=16, seed=1)),
        (sparse((7, 9), 20), dict(index_codec="auto", value_codec="sign")),
        (sparse((2 ** 33,), 50, np.float64), dict(index_codec="varint", value_codec="float32")),
        (rng.standard_normal((6, 5)).astype(np.float32), dict(value_codec="float16")),
        ({"a": sparse((100,), 10), "bb": sparse((3, 4, 5), 7, np.float64),
          "dense": rng.standard_normal(9).astype(np.float16), "empty": sparse((0, 4), 0)},
         dict(index_codec="rice", value_codec="qsgd", bits=1, block=3, seed=7)),
        ({"x": sparse((64,), 64), "y.weight": sparse((257,), 30)}, dict(index_codec="varint", value_codec="float32")),
        ({"p": sparse((4096,), 500), "q": rng.standard_normal((2, 3)).astype(np.float64)},
         dict(index_codec="bitmap", value_codec="bfloat16")),
        ({"s": sparse((33,), 5), "t": sparse((1000,), 999)}, dict(index_codec="auto", value_codec="sign")),
    ]
    payloads = [gs.encode(u, **o) for u, o in cases]
    for p in payloads:  # the unmutated payloads decode
        gs.decode(p)

    INTERESTING = (0x00, 0xFF, 0x7F, 0x80, 0x01)
    BOUNDARY = (0, 1, 2, 7, 8, 56, 57, 255, 0xFFFF, 2**31, 2**32 - 1, 2**32, 2**56 - 1, 2**56, 2**63, 2**64 - 1)
    r = random.Random(987654321)

    def mutate(b):
        for _ in range(r.choice((1, 1, 2, 3, 5))):
            n = len(b)
            op = r.randrange(9)
            if op == 0 and n:
                b[r.randrange(n)] ^= 1 << r.randrange(8)
            elif op == 1 and n:
                b[r.randrange(n)] = r.choice(INTERESTING)
            elif op == 2 and n:
                b[r.randrange(n)] = r.randrange(256)
            elif op == 3:
                at = r.randrange(n + 1)
                b[at:at] = bytes(r.randrange(256) for _ in range(r.randrange(1, 9)))
            elif op == 4 and n:
                at = r.randrange(n)
                del b[at:at + r.randrange(1, 9)]
            elif op == 5 and n:
                at = r.randrange(n)
                b[at:at] = b[at:at + r.randrange(1, 17)]  # duplicate a range
            elif op == 6 and n:
                del b[r.randrange(n):]  # truncate
            elif op in (7, 8) and n >= 8:
                # A little-endian field (header / record header / section word) set to a
                # boundary value; the header fields are hit more often than the rest.
                w = r.choice((1, 2, 4, 8))
                at = r.randrange(min(n - w + 1, 64)) if op == 7 else r.randrange(n - w + 1)
                b[at:at + w] = (r.choice(BOUNDARY) % (1 << (8 * w))).to_bytes(w, "little")
        return b

    def check(result):
        items = result.values() if isinstance(result, dict) else [result]
        for item in items:
            if isinstance(item, gs.Sparse):
                idx, vals = item.indices, item.values
                assert isinstance(idx, np.ndarray) and idx.dtype == np.int64 and idx.ndim == 1, idx
                assert all(s >= 0 for s in item.shape), item.shape
                assert len(vals) == len(idx), (len(vals), len(idx))
                if idx.size:
                    numel = 1
                    for s in item.shape:
                        numel *= s
                    assert idx[0] >= 0 and int(idx[-1]) < numel, (idx[0], idx[-1], item.shape)
                    assert np.all(idx[1:] > idx[:-1]), "indices not strictly increasing"
            else:
                assert isinstance(item, np.ndarray), type(item)
                assert item.dtype in (np.float32, np.float64, np.float16), item.dtype

    ok = rejected = fixed = 0
    levels = gs.available_simd_levels()
    per_level = -(-N // len(levels))
    i = 0
    for level in levels:
        gs.set_simd_level(level)
        for _ in range(min(per_level, N - i)):
            b = mutate(bytearray(payloads[i % len(payloads)]))
            i += 1
            if r.random() < 0.5 and len(b) >= 24:
                # Re-fix the header so the mutation reaches past it: the CRC always,
                # the body length usually.
                if r.random() < 0.8:
                    b[16:24] = struct.pack("<Q", len(b) - 24)
                b[12:16] = struct.pack("<I", _core.crc32c(bytes(b[24:])))
                fixed += 1
            data = bytes(b)
            try:
                res = gs.decode(data)
            except ValueError:
                rejected += 1
                continue
            except BaseException:
                print("FAILING INPUT (level %s): %s" % (level, data.hex()), flush=True)
                raise
            try:
                check(res)
            except BaseException:
                print("BAD RESULT (level %s): %s" % (level, data.hex()), flush=True)
                raise
            ok += 1
    print("SUMMARY mutations=%d decoded=%d rejected=%d crc_fixed=%d levels=%s" % (i, ok, rejected, fixed, ",".join(levels)))
    """
)


def test_corrupted_payloads_raise_value_error_or_decode_well_formed():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(MUTATIONS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"decoder subprocess failed (returncode {proc.returncode}):\n{out[-6000:]}"
    summary = [line for line in proc.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert summary, out[-6000:]
    fields = dict(kv.split("=") for kv in summary[-1].split()[1:])
    assert int(fields["mutations"]) == MUTATIONS
    assert int(fields["decoded"]) + int(fields["rejected"]) == MUTATIONS
    # Both outcomes must be common, or the mutations are not reaching the decoders.
    assert int(fields["decoded"]) > MUTATIONS // 50, summary
    assert int(fields["rejected"]) > MUTATIONS // 10, summary
    assert int(fields["crc_fixed"]) > MUTATIONS // 3, summary
