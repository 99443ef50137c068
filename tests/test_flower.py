"""The Flower integration with an in-process grid (no Ray, no network): the client mod and
the strategy wrapper against a plain numpy reference of error-feedback top-k FedAvg,
FedAdam through the wrapper, stock FedAvg refusing a payload, hostile replies, a
server-set ratio, composition with Flower's message_size_mod."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

fl = pytest.importorskip("gradsparse.integrations.flower", reason="Flower (flwr) is not installed: "
                         "pip install \"gradsparse[flower]\"")
from gradsparse.integrations.flower._flwr import Array, ArrayRecord, ConfigRecord, RecordDict  # noqa: E402

_strategies = pytest.importorskip("flwr.serverapp.strategy")
FedAdam, FedAvg = _strategies.FedAdam, _strategies.FedAvg

import gradsparse as gs  # noqa: E402
from gradsparse.integrations.flower.testing import LocalGrid  # noqa: E402

from flower_lsq import LeastSquares  # noqa: E402

N_IN, N_OUT = 12, 5
SIZES = (30, 50, 40, 20)  # examples per node (FedAvg weights)


LSQ = LeastSquares(N_IN, N_OUT, SIZES)
local_train = LSQ.local_train


def make_app(*mods):
    return LSQ.client_app(*mods)


def initial(count=False):
    """The initial model; `count`: with a non-float array (passed through uncompressed; FedAvg
    averages it into float64, so only single-round tests use it)."""
    rng = np.random.default_rng(7)
    out = {"w": (0.1 * rng.standard_normal((N_IN, N_OUT))).astype(np.float32), "b": np.zeros(N_OUT, np.float32)}
    if count:
        out["count"] = np.zeros(1, np.int64)
    return out


def as_record(arrays):
    return ArrayRecord({k: Array(v) for k, v in arrays.items()})


def fedavg(n, **kw):
    return FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n, **kw)


def reference(rounds, ratio, nodes=3):
    """Error-feedback top-k FedAvg in plain numpy: the global model after each round, and
    each node's residual at the end. Replies in node order; FedAvg's float32 weighted sum."""
    g = initial()
    res = {p: {k: np.zeros_like(g[k]) for k in ("w", "b")} for p in range(nodes)}
    total = sum(SIZES[:nodes])
    n = g["w"].size + g["b"].size
    k = max(1, int(np.floor(ratio * n + 0.5)))
    models = []
    for _ in range(rounds):
        agg = None
        for p in range(nodes):
            local = local_train(g, p)
            acc = {name: (local[name] - g[name]) + res[p][name] for name in ("w", "b")}
            flat = np.concatenate([acc["w"].ravel(), acc["b"].ravel()])
            mag = np.abs(flat)
            order = np.lexsort((np.arange(flat.size), -mag))  # larger first, lower index wins ties
            keep = np.zeros(flat.size, bool)
            keep[order[:k]] = True
            sent_flat = np.where(keep, flat, np.float32(0))
            sent = {"w": sent_flat[:g["w"].size].reshape(g["w"].shape), "b": sent_flat[g["w"].size:]}
            for name in ("w", "b"):
                res[p][name] = acc[name] - sent[name]
            contrib = {"w": g["w"] + sent["w"], "b": g["b"] + sent["b"]}
            wgt = SIZES[p] / total
            agg = {key: v * wgt for key, v in contrib.items()} if agg is None else \
                {key: agg[key] + v * wgt for key, v in contrib.items()}
        g = agg
        models.append(g)
    return models, res


def run(strategy, app, rounds, nodes=3, count=False):
    grid = LocalGrid(app, nodes)
    result = strategy.start(grid=grid, initial_arrays=as_record(initial(count)), num_rounds=rounds)
    return result, grid


def test_import_gradsparse_does_not_import_flwr():
    code = "import sys, gradsparse, gradsparse.compress; sys.exit('flwr' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_matches_numpy_error_feedback_topk_fedavg():
    strategy = fl.CompressedStrategy(fedavg(3), method="topk", params={"ratio": 0.1}, error_feedback="on")
    result, grid = run(strategy, make_app(fl.compression_mod()), rounds=4)
    models, res = reference(4, 0.1)
    got = {k: a.numpy() for k, a in result.arrays.items()}
    assert sorted(got) == ["b", "w"]
    for name in ("w", "b"):
        np.testing.assert_array_equal(got[name], models[-1][name])
    for p, nid in enumerate(sorted(grid.contexts)):
        stored = grid.contexts[nid].state[fl.RESIDUAL_KEY]
        for name in ("w", "b"):
            np.testing.assert_array_equal(stored[name].numpy(), res[p][name])
    n = N_IN * N_OUT + N_OUT
    k = int(np.floor(0.1 * n + 0.5))
    assert [r["round"] for r in strategy.rounds] == [1, 2, 3, 4]
    for entry in strategy.rounds:
        assert [r["node_id"] for r in entry["replies"]] == sorted(grid.contexts)
        assert all(r["selected"] == k and sum(r["selected_by_tensor"]) == k for r in entry["replies"])
        assert entry["rejected"] == [] and entry["failed"] == []
        assert entry["raw_bytes"] == 3 * 4 * n


def test_byte_counts_are_the_payload_lengths():
    seen = []

    class Spy(LocalGrid):
        def pull_messages(self, message_ids):
            out = list(super().pull_messages(message_ids))
            for m in out:
                if m.has_content() and "arrays" in m.content:
                    seen.append(len(m.content["arrays"][fl.UPDATE_KEY].data))
            return out

    strategy = fl.CompressedStrategy(fedavg(2), method="topk", params={"ratio": 0.05})
    strategy.start(grid=Spy(make_app(fl.compression_mod()), 2), initial_arrays=as_record(initial()), num_rounds=2)
    assert sum(seen) == sum(e["uplink_bytes"] for e in strategy.rounds)
    per_reply = [r["payload_bytes"] for e in strategy.rounds for r in e["replies"]]
    assert per_reply == seen
    # what Flower itself serialises for the reply's records is the payload plus a small overhead
    assert all(r["message_bytes"] > r["payload_bytes"] for e in strategy.rounds for r in e["replies"])


def test_fedadam_through_the_wrapper():
    def adam():
        return FedAdam(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3,
                       eta=0.05, eta_l=0.05, tau=1e-3)

    lossless, _ = run(fl.CompressedStrategy(adam(), method="topk", params={"ratio": 1.0}),
                      make_app(fl.compression_mod()), rounds=3)
    plain, _ = run(adam(), make_app(), rounds=3)
    for name in ("w", "b"):
        # g + (local - g) equals local up to float32 rounding
        np.testing.assert_allclose(lossless.arrays[name].numpy(), plain.arrays[name].numpy(), rtol=1e-5, atol=1e-6)
    sparse, _ = run(fl.CompressedStrategy(adam(), method="topk", params={"ratio": 0.2}),
                    make_app(fl.compression_mod()), rounds=3)
    assert not np.array_equal(sparse.arrays["w"].numpy(), plain.arrays["w"].numpy())
    assert np.isfinite(sparse.arrays["w"].numpy()).all()


def test_stock_fedavg_refuses_a_payload():
    strategy = fedavg(2)
    with pytest.raises(TypeError, match="serialization type"):
        strategy.start(grid=LocalGrid(make_app(fl.compression_mod("topk", {"ratio": 0.1})), 2),
                       initial_arrays=as_record(initial()), num_rounds=1)


def test_server_set_ratio_per_round():
    ratios = {1: 0.05, 2: 0.3, 3: 0.01}
    strategy = fl.CompressedStrategy(fedavg(2), method="topk", params={"ratio": 0.5},
                                     params_fn=lambda r: {"ratio": ratios[r]})
    # the client's own default (ratio 0.9) is overridden by the server
    run(strategy, make_app(fl.compression_mod("topk", {"ratio": 0.9})), rounds=3, nodes=2)
    n = N_IN * N_OUT + N_OUT
    for entry in strategy.rounds:
        want = max(1, int(np.floor(ratios[entry["round"]] * n + 0.5)))
        assert [r["selected"] for r in entry["replies"]] == [want, want]


def test_other_compressors_and_dense_arrays():
    strategy = fl.CompressedStrategy(fedavg(2), method="qsgd", params={"bits": 4}, dense=["b"])
    result, _ = run(strategy, make_app(fl.compression_mod()), rounds=1, nodes=2)
    entry = strategy.rounds[0]
    assert entry["rejected"] == [] and entry["failed"] == [] and len(entry["replies"]) == 2
    # b is sent as it is: the result is FedAvg of the clients' own b values, exactly
    g = initial()
    total = SIZES[0] + SIZES[1]
    want_b = local_train(g, 0)["b"] * (SIZES[0] / total) + local_train(g, 1)["b"] * (SIZES[1] / total)
    np.testing.assert_array_equal(result.arrays["b"].numpy(), want_b)
    # w went through 4-bit QSGD: close to, not equal to, plain FedAvg
    want_w = local_train(g, 0)["w"] * (SIZES[0] / total) + local_train(g, 1)["w"] * (SIZES[1] / total)
    got_w = result.arrays["w"].numpy()
    assert not np.array_equal(got_w, want_w)
    assert np.abs(got_w - want_w).max() < 0.5 * np.abs(want_w - g["w"]).max()
    assert all(r["selected_by_tensor"] == [N_IN * N_OUT] for r in entry["replies"])


def test_message_size_mod_composes(caplog):
    from flwr.clientapp.mod import message_size_mod

    def outgoing():
        sizes = [int(m.split()[-2]) for m in caplog.messages if m.startswith("Outgoing message size")]
        caplog.clear()
        return sizes

    caplog.set_level("INFO", logger="flwr")
    sizes = {}
    for order, mods in (("outer", [message_size_mod, fl.compression_mod()]),
                        ("inner", [fl.compression_mod(), message_size_mod])):
        strategy = fl.CompressedStrategy(fedavg(2), method="topk", params={"ratio": 0.05})
        run(strategy, make_app(*mods), rounds=1, nodes=2)
        entry = strategy.rounds[0]
        assert len(entry["replies"]) == 2 and entry["rejected"] == [] and entry["failed"] == []
        sizes[order] = outgoing()
        if order == "outer":  # it measured the compressed reply: Flower's own count of what was sent
            assert sizes[order] == [r["message_bytes"] for r in entry["replies"]]
    assert len(sizes["inner"]) == 2 and all(o < i for o, i in zip(sizes["outer"], sizes["inner"]))


# ----------------------------------------------------------------------------- hostile replies

def _tamper_mod(kind):
    """A mod after the compression mod (it sees the compressed reply) that damages node 3's."""
    def mod(msg, context, call_next):
        out = call_next(msg, context)
        if context.node_id != 3 or not out.has_content():
            return out
        rec = out.content["arrays"]
        payload = rec[fl.UPDATE_KEY].data
        if kind == "truncated":
            rec[fl.UPDATE_KEY] = fl.payload_array(payload[:len(payload) // 2])
        elif kind == "garbage":
            rec[fl.UPDATE_KEY] = fl.payload_array(bytes(np.random.default_rng(0).integers(0, 256, len(payload),
                                                                                          dtype=np.uint8)))
        elif kind == "stype":
            rec[fl.UPDATE_KEY] = Array(dtype="uint8", shape=(len(payload),), stype="gradsparse.wire/9", data=payload)
        elif kind == "shape-lie":
            rec[fl.UPDATE_KEY] = Array(dtype="uint8", shape=(len(payload) + 5,), stype=fl.PAYLOAD_STYPE, data=payload)
        elif kind == "wrong-shape":
            rec[fl.UPDATE_KEY] = fl.payload_array(gs.encode({"w": np.ones((N_OUT, N_IN), np.float32),
                                                             "b": np.ones(N_OUT, np.float32)}))
        elif kind == "nan":
            rec[fl.UPDATE_KEY] = fl.payload_array(gs.encode({"w": np.full((N_IN, N_OUT), np.nan, np.float32),
                                                             "b": np.ones(N_OUT, np.float32)}))
        elif kind == "extra-tensor":
            rec[fl.UPDATE_KEY] = fl.payload_array(gs.encode({"w": np.ones((N_IN, N_OUT), np.float32),
                                                             "b": np.ones(N_OUT, np.float32),
                                                             "z": np.ones(3, np.float32)}))
        elif kind == "extra-array":
            rec["evil"] = Array(np.ones(3, np.float32))
        elif kind == "missing-passthrough":
            del rec["count"]
        elif kind == "dense-model":
            out.content["arrays"] = ArrayRecord({"w": Array(np.ones((N_IN, N_OUT), np.float32)),
                                                 "b": Array(np.ones(N_OUT, np.float32)),
                                                 "count": Array(np.ones(1, np.int64))})
        elif kind == "bad-passthrough":
            rec["count"] = Array(np.ones(2, np.int64))
        return out
    return mod


@pytest.mark.parametrize("kind", ["truncated", "garbage", "stype", "shape-lie", "wrong-shape", "nan", "extra-tensor",
                                  "extra-array", "missing-passthrough", "dense-model", "bad-passthrough"])
def test_hostile_reply_is_a_failed_node(kind):
    strategy = fl.CompressedStrategy(fedavg(2), method="topk", params={"ratio": 0.1})
    app = make_app(_tamper_mod(kind), fl.compression_mod())
    result, _ = run(strategy, app, rounds=1, nodes=3, count=True)
    entry = strategy.rounds[0]
    assert [r["node_id"] for r in entry["rejected"]] == [3], entry["rejected"]
    assert [r["node_id"] for r in entry["replies"]] == [2, 4]
    # the round went on with the two valid replies: FedAvg of nodes 2 and 4 (partitions 0, 2)
    honest = fl.CompressedStrategy(fedavg(2), method="topk", params={"ratio": 0.1})
    grid = LocalGrid(make_app(fl.compression_mod()), 2, node_ids=[2, 4],
                     node_configs=[{"partition-id": 0}, {"partition-id": 2}])
    want = honest.start(grid=grid, initial_arrays=as_record(initial(True)), num_rounds=1)
    for name in ("w", "b", "count"):
        np.testing.assert_array_equal(result.arrays[name].numpy(), want.arrays[name].numpy())


def test_client_side_errors_become_error_replies():
    # the server names a compressor the client does not know -> every node fails cleanly
    strategy = fl.CompressedStrategy(fedavg(2), method="topk", params={"ratio": 0.1})
    strategy.settings = fl.Settings("no-such", {}, "auto", 0, ())
    with pytest.raises(ValueError):
        strategy.start(grid=LocalGrid(make_app(fl.compression_mod()), 2), initial_arrays=as_record(initial()),
                       num_rounds=1)
    app = make_app(fl.compression_mod())  # no method anywhere
    grid = LocalGrid(app, 1)
    msg = grid.create_message(RecordDict({"arrays": as_record(initial()), "config": ConfigRecord({})}), "train", 2, "1")
    reply = list(grid.send_and_receive([msg]))[0]
    assert reply.has_error() and "no compressor named" in reply.error.reason
    msg = grid.create_message(RecordDict({"arrays": as_record(initial()), "config": ConfigRecord(
        {"gradsparse.method": "topk", "gradsparse.params": "{\"ratio\": 7}"})}), "train", 2, "1")
    reply = list(grid.send_and_receive([msg]))[0]
    assert reply.has_error() and "ratio" in reply.error.reason


def test_evaluate_messages_pass_through():
    app = make_app(fl.compression_mod("topk", {"ratio": 0.1}))
    grid = LocalGrid(app, 1)
    msg = grid.create_message(RecordDict({"arrays": as_record(initial()), "config": ConfigRecord({})}),
                              "evaluate", 2, "1")
    reply = list(grid.send_and_receive([msg]))[0]
    assert reply.content["metrics"]["loss"] == LSQ.loss(initial(), 0) and fl.RESIDUAL_KEY not in grid.contexts[2].state


@pytest.mark.parametrize("kwargs, match", [({"returns": "delta"}, "returns"), ({"error_feedback": "yes"}, "error_feedback"),
                                           ({"seed": -1}, "seed"), ({"dense": "b"}, "dense"),
                                           ({"params": {"nope": 1}}, "nope")])
def test_mod_arguments_are_checked(kwargs, match):
    kwargs = {"method": "topk", **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        fl.compression_mod(**kwargs)


def test_strategy_arguments_are_checked():
    with pytest.raises(TypeError, match="strategy"):
        fl.CompressedStrategy(object())
    with pytest.raises(ValueError, match="reconstruct"):
        fl.CompressedStrategy(fedavg(2), reconstruct="both")
    with pytest.raises(ValueError, match="method"):
        fl.CompressedStrategy(fedavg(2), method="nope")


# ----------------------------------------------------------------------------- compressed downlink

def reference_downlink(rounds, ratio, down_ratio, nodes=3):
    """`reference` with a compressed downlink: the server compresses (global - broadcast)
    with its own error feedback; clients train from the broadcast model."""
    def topk_ef(acc_parts, k):
        flat = np.concatenate([a.ravel() for a in acc_parts.values()])
        order = np.lexsort((np.arange(flat.size), -np.abs(flat)))
        keep = np.zeros(flat.size, bool)
        keep[order[:k]] = True
        sent_flat = np.where(keep, flat, np.float32(0))
        out, at = {}, 0
        for name, a in acc_parts.items():
            out[name] = sent_flat[at:at + a.size].reshape(a.shape)
            at += a.size
        return out

    g = initial()
    n = g["w"].size + g["b"].size
    k, kd = (max(1, int(np.floor(r * n + 0.5))) for r in (ratio, down_ratio))
    bc = {name: a.copy() for name, a in g.items()}
    server_res = {name: np.zeros_like(a) for name, a in g.items()}
    res = {p: {name: np.zeros_like(a) for name, a in g.items()} for p in range(nodes)}
    total = sum(SIZES[:nodes])
    for _ in range(rounds):
        acc = {name: (g[name] - bc[name]) + server_res[name] for name in g}
        sent = topk_ef(acc, kd)
        for name in g:
            server_res[name] = acc[name] - sent[name]
            bc[name] = bc[name] + sent[name]
        agg = None
        for p in range(nodes):
            local = local_train(bc, p)
            up_acc = {name: (local[name] - bc[name]) + res[p][name] for name in g}
            up = topk_ef(up_acc, k)
            for name in g:
                res[p][name] = up_acc[name] - up[name]
            wgt = SIZES[p] / total
            contrib = {name: (bc[name] + up[name]) * wgt for name in g}
            agg = contrib if agg is None else {name: agg[name] + contrib[name] for name in g}
        g = agg
    return g, bc


def test_compressed_downlink_matches_numpy_reference():
    strategy = fl.CompressedStrategy(fedavg(3), method="topk", params={"ratio": 0.1}, downlink="topk",
                                     downlink_params={"ratio": 0.2})
    result, grid = run(strategy, make_app(fl.compression_mod()), rounds=4)
    want, bc = reference_downlink(4, 0.1, 0.2)
    for name in ("w", "b"):
        np.testing.assert_array_equal(result.arrays[name].numpy(), want[name])
        for ctx in grid.contexts.values():  # every node holds the broadcast model of the last round
            np.testing.assert_array_equal(ctx.state["gradsparse.broadcast"][name].numpy(), bc[name])
    first, later = strategy.rounds[0], strategy.rounds[1:]
    dense = gs.encoded_size({"w": initial()["w"], "b": initial()["b"]})
    assert first["downlink_bytes"] == 3 * dense  # first contact: the whole model
    assert all(0 < e["downlink_bytes"] < 3 * dense / 2 for e in later)
    assert all(e["failed"] == [] and e["rejected"] == [] for e in strategy.rounds)


def test_downlink_catches_up_nodes_that_skipped_rounds():
    strategy = fl.CompressedStrategy(
        FedAvg(fraction_train=0.5, fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=4),
        method="topk", params={"ratio": 0.1}, downlink="topk", downlink_params={"ratio": 0.3})
    seen = {}

    def check_mod(msg, context, call_next):  # after the compression mod has rebuilt the model
        seen.setdefault(int(msg.content["config"]["server-round"]), {})[context.node_id] = \
            {k: a.numpy() for k, a in msg.content["arrays"].items()}
        return call_next(msg, context)

    import random
    random.seed(3)  # Flower samples nodes with the random module
    run(strategy, make_app(fl.compression_mod(), check_mod), rounds=6, nodes=4)
    assert all(e["failed"] == [] and e["rejected"] == [] for e in strategy.rounds)
    participated = {}
    for rnd in sorted(seen):
        models = list(seen[rnd].values())
        for m in models[1:]:  # every node of a round trains from the same model
            for name in ("w", "b"):
                np.testing.assert_array_equal(m[name], models[0][name])
        for node in seen[rnd]:
            participated.setdefault(node, []).append(rnd)
    assert any(len(r) >= 2 and any(b - a > 1 for a, b in zip(r, r[1:])) for r in participated.values()), \
        "no node skipped a round: the catch-up path was not exercised"


def test_downlink_out_of_sync_node_recovers():
    def forget_mod(msg, context, call_next):
        if context.node_id == 3 and msg.content["config"]["server-round"] == 2:
            del context.state["gradsparse.broadcast"]
        return call_next(msg, context)

    strategy = fl.CompressedStrategy(fedavg(3), method="topk", params={"ratio": 0.1}, downlink="topk",
                                     downlink_params={"ratio": 0.2})
    run(strategy, make_app(forget_mod, fl.compression_mod()), rounds=3)
    assert strategy.rounds[0]["failed"] == []
    assert [f["node_id"] for f in strategy.rounds[1]["failed"]] == [3]
    assert "out of sync" in strategy.rounds[1]["failed"][0]["reason"]
    assert strategy.rounds[2]["failed"] == [] and len(strategy.rounds[2]["replies"]) == 3


@pytest.mark.parametrize("kind", ["sparse-base", "garbage-base", "garbage-step", "names", "nan-base"])
def test_hostile_downlink_is_an_error_reply(kind):
    from gradsparse.integrations.flower import downlink as down
    g = initial()
    app = make_app(fl.compression_mod("topk", {"ratio": 0.1}))
    grid = LocalGrid(app, 1)
    config = {down.ROUND: 1, down.FROM: -1, down.METHOD: "topk", down.PARAMS: "{\"ratio\": 0.1}",
              down.NAMES: "[\"w\", \"b\"]"}
    base = gs.encode(g)
    if kind == "sparse-base":  # a sparse record claiming a huge shape: never densified
        base = gs.encode({"w": gs.Sparse(np.array([0], np.int64), np.ones(1, np.float32), (1 << 40,)),
                          "b": g["b"]})
    elif kind == "garbage-base":
        base = bytes(len(base))
    elif kind == "nan-base":
        base = gs.encode({"w": np.full_like(g["w"], np.nan), "b": g["b"]})
    elif kind == "names":
        config[down.NAMES] = "[\"w\", \"b\", \"missing\"]"
    arrays = {down.BASE_KEY: fl.payload_array(base)}
    if kind == "garbage-step":
        config[down.FROM] = 0
        grid.contexts[2].state[down.STATE_KEY] = as_record(g)
        grid.contexts[2].state[down.STATE_ROUND] = ConfigRecord({"round": 0})
        arrays = {f"{down.STEP_PREFIX}1": fl.payload_array(b"\x00" * 40)}
    msg = grid.create_message(RecordDict({"arrays": ArrayRecord(arrays), "config": ConfigRecord(config)}),
                              "train", 2, "1")
    reply = list(grid.send_and_receive([msg]))[0]
    assert reply.has_error() and reply.error.reason.startswith("gradsparse compression_mod:"), reply


def test_downlink_node_that_did_not_reply_gets_the_whole_model():
    class Lossy(LocalGrid):  # node 3's round-2 message is lost: it never runs, never replies
        def push_messages(self, messages):
            keep = [m for m in messages
                    if not (m.metadata.dst_node_id == 3 and m.content["config"]["server-round"] == 2)]
            return super().push_messages(keep)

    strategy = fl.CompressedStrategy(fedavg(2), method="topk", params={"ratio": 0.1}, downlink="topk",
                                     downlink_params={"ratio": 0.2})
    grid = Lossy(make_app(fl.compression_mod()), 3)
    strategy.start(grid=grid, initial_arrays=as_record(initial()), num_rounds=3)
    assert [len(e["replies"]) for e in strategy.rounds] == [3, 2, 3]
    assert all(e["failed"] == [] and e["rejected"] == [] for e in strategy.rounds)
    dense = gs.encoded_size({"w": initial()["w"], "b": initial()["b"]})
    assert dense < strategy.rounds[2]["downlink_bytes"] < 2 * dense  # node 3: the whole model again
