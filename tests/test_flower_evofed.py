"""EvoFed through Flower with an in-process grid (no Ray, no network): EvoFedStrategy and
EvoFedMod against a direct loop over EvoFed.encode/aggregate/step, partial participation
and catch-up, hostile replies, a node that lost its state, byte counts, fitness
sparsification, resynchronisation by the server's state."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

fl = pytest.importorskip("gradsparse.integrations.flower", reason="Flower (flwr) is not installed: "
                         "pip install \"gradsparse[flower]\"")
from gradsparse.integrations.flower._flwr import (Array, ArrayRecord, ConfigRecord, Message,  # noqa: E402
                                                  MetricRecord, RecordDict)

import gradsparse as gs  # noqa: E402
from gradsparse.evofed import EvoFed, LaggedMomentum, Population, Shaping  # noqa: E402
from gradsparse.integrations.flower.evofed import (BASE_KEY, OPTIMIZER, ROUNDS, STATE_ARRAYS, STATE_INFO,  # noqa: E402
                                                   STATE_PREFIX, STEP_PREFIX)
from gradsparse.integrations.flower.testing import LocalGrid  # noqa: E402

from flower_lsq import LeastSquares  # noqa: E402

N_IN, N_OUT = 100, 5
D = N_IN * N_OUT + N_OUT
P, N = 2, 8  # partitions, population size


def make(**kw):
    """The factory every party calls: the same population seed everywhere."""
    return lambda: EvoFed(Population(N, 0.05, seed=11, partitions=P), Shaping(zscore=True), **kw)


LSQ = LeastSquares(N_IN, N_OUT, [25 + 5 * pid for pid in range(8)])
node_data, local_train, loss = LSQ.node_data, LSQ.local_train, LSQ.loss


def make_app(*mods):
    return LSQ.client_app(*mods)


def initial():
    rng = np.random.default_rng(7)
    return {"w": (0.1 * rng.standard_normal((N_IN, N_OUT))).astype(np.float32), "b": np.zeros(N_OUT, np.float32)}


def flat(arrays):
    return np.concatenate([arrays["w"].ravel(), arrays["b"].ravel()]).astype(np.float32)


def unflat(theta):
    return {"w": theta[:N_IN * N_OUT].reshape(N_IN, N_OUT), "b": theta[N_IN * N_OUT:]}


def as_record(arrays):
    return ArrayRecord({k: Array(v) for k, v in arrays.items()})


def reference(make_evofed, participants, lsq=LSQ, start=None):
    """EvoFed by hand: per round, the participants' payloads (node id order, client = node
    id, partition = node id - 2), the server's mean, the step. The model after each round
    (index 0: the start) and each round's server payload."""
    evo = make_evofed()
    theta = flat(start or initial())
    thetas, downs = [theta], {}
    local_train = lsq.local_train

    def unflat(t):
        return {"w": t[:lsq.n_in * lsq.n_out].reshape(lsq.n_in, lsq.n_out), "b": t[lsq.n_in * lsq.n_out:]}
    for rnd, nodes in enumerate(participants, 1):
        if not nodes:
            thetas.append(theta)
            continue
        ups = [evo.encode(theta, flat(local_train(unflat(theta), nid - 2)) - theta, rnd, client=nid)
               for nid in sorted(nodes)]
        downs[rnd] = evo.aggregate(ups, rnd)
        theta = evo.step(theta, downs[rnd], rnd)
        thetas.append(theta)
    return thetas, downs


def strategy_for(n, make_evofed=None, **kw):
    kw = {"fraction_train": 1.0, "min_train_nodes": n, "min_available_nodes": n, "fraction_evaluate": 0.0, **kw}
    return fl.EvoFedStrategy(make_evofed or make(), **kw)


def run(strategy, app, rounds, nodes=3, grid=None):
    grid = grid or LocalGrid(app, nodes)
    return strategy.start(grid=grid, initial_arrays=as_record(initial()), num_rounds=rounds), grid


def assert_model(record, theta):
    want = unflat(theta)
    assert list(record.keys()) == ["w", "b"]
    for name in ("w", "b"):
        np.testing.assert_array_equal(record[name].numpy(), want[name])


# ----------------------------------------------------------------------------- the protocol

def test_matches_a_direct_evofed_loop():
    strategy = strategy_for(3)
    result, grid = run(strategy, make_app(fl.EvoFedMod(make())), rounds=4)
    thetas, downs = reference(make(), [[2, 3, 4]] * 4)
    assert_model(result.arrays, thetas[4])
    assert strategy.history == downs  # the server's payloads, byte for byte
    assert not np.array_equal(thetas[4], thetas[0])
    for nid, ctx in grid.contexts.items():  # every node holds the model of round 3 (round 4's step comes next time)
        np.testing.assert_array_equal(ctx.state[STATE_ARRAYS]["theta"].numpy(), thetas[3])
        assert ctx.state[STATE_INFO]["round"] == 3
    base = len(gs.encode(thetas[0]))
    assert [e["downlink_bytes"] for e in strategy.rounds] == [3 * base] + [3 * len(downs[r]) for r in (1, 2, 3)]
    assert all(d["base"] == (e["round"] == 1) for e in strategy.rounds for d in e["downlink"])
    for e in strategy.rounds:
        assert [r["node_id"] for r in e["replies"]] == [2, 3, 4]
        assert e["rejected"] == [] and e["failed"] == []
        assert all(r["selected"] == P * N for r in e["replies"])


def test_partial_participation_and_catch_up():
    seen, served = {}, {}

    class Recording(fl.EvoFedStrategy):
        def configure_train(self, server_round, arrays, config, grid):
            served[server_round] = {k: a.numpy() for k, a in arrays.items()}
            return super().configure_train(server_round, arrays, config, grid)

    def check_mod(msg, context, call_next):  # inside EvoFedMod: sees the model the app trains from
        seen.setdefault(int(msg.content["config"]["server-round"]), {})[context.node_id] = \
            {k: a.numpy() for k, a in msg.content["arrays"].items()}
        return call_next(msg, context)

    strategy = Recording(make(), fraction_train=0.5, min_train_nodes=2, min_available_nodes=4,
                         fraction_evaluate=0.0)
    random.seed(3)  # Flower samples nodes with the random module
    result, _ = run(strategy, make_app(fl.EvoFedMod(make()), check_mod), rounds=6, nodes=4)
    assert all(e["failed"] == [] and e["rejected"] == [] for e in strategy.rounds)
    participants = [[r["node_id"] for r in e["replies"]] for e in strategy.rounds]
    thetas, _ = reference(make(), participants)
    assert_model(result.arrays, thetas[6])
    for rnd in range(1, 7):  # every node of a round trains from the server's model
        assert sorted(seen[rnd]) == participants[rnd - 1]
        for model in seen[rnd].values():
            for name in ("w", "b"):
                np.testing.assert_array_equal(model[name], served[rnd][name])
                np.testing.assert_array_equal(model[name], unflat(thetas[rnd - 1])[name])
    rounds_of = {}
    for rnd, nodes in enumerate(participants, 1):
        for nid in nodes:
            rounds_of.setdefault(nid, []).append(rnd)
    assert any(any(b - a > 1 for a, b in zip(r, r[1:])) for r in rounds_of.values()), "no node skipped a round"
    assert any(r[0] > 2 for r in rounds_of.values()), "no node joined late"
    for e in strategy.rounds:  # what each node was sent: the start model once, then the rounds it missed
        for d in e["downlink"]:
            mine = rounds_of[d["node_id"]]
            previous = [r for r in mine if r < e["round"]]
            assert d["base"] == (not previous)
            assert d["rounds"] == e["round"] - 1 - (previous[-1] - 1 if previous else 0)


def test_evaluation_gets_the_dense_model():
    strategy = strategy_for(2, fraction_evaluate=1.0, min_evaluate_nodes=2)
    result, _ = run(strategy, make_app(fl.EvoFedMod(make())), rounds=2, nodes=2)
    model = {k: a.numpy() for k, a in result.arrays.items()}
    got = result.evaluate_metrics_clientapp[2]["loss"]
    assert got == pytest.approx((loss(model, 0) + loss(model, 1)) / 2, rel=1e-6)


# ----------------------------------------------------------------------------- hostile replies

def _fitness(pop, values):
    return fl.payload_array(gs.encode(np.full(pop, values, np.float32)))


def _tamper_mod(kind, rounds=(1,)):
    """Outside EvoFedMod (it sees the fitness reply): damages node 3's reply in `rounds`."""
    def mod(msg, context, call_next):
        out = call_next(msg, context)
        if context.node_id != 3 or int(msg.content["config"]["server-round"]) not in rounds:
            return out
        rec = out.content["arrays"]
        payload = rec[fl.FITNESS_KEY].data
        if kind == "truncated":
            rec[fl.FITNESS_KEY] = fl.payload_array(payload[:len(payload) // 2])
        elif kind == "garbage":
            rng = np.random.default_rng(0)
            rec[fl.FITNESS_KEY] = fl.payload_array(bytes(rng.integers(0, 256, len(payload), dtype=np.uint8)))
        elif kind == "stype":
            rec[fl.FITNESS_KEY] = Array(dtype="uint8", shape=(len(payload),), stype="gradsparse.wire/9", data=payload)
        elif kind == "shape-lie":
            rec[fl.FITNESS_KEY] = Array(dtype="uint8", shape=(len(payload) + 5,), stype=fl.PAYLOAD_STYPE,
                                        data=payload)
        elif kind == "wrong-population":
            rec[fl.FITNESS_KEY] = _fitness((P, N + 2), 0.5)
        elif kind == "wrong-partitions":
            rec[fl.FITNESS_KEY] = _fitness((1, N), 0.5)
        elif kind == "flat":
            rec[fl.FITNESS_KEY] = _fitness((P * N,), 0.5)
        elif kind == "nan":
            rec[fl.FITNESS_KEY] = _fitness((P, N), np.nan)
        elif kind == "inf-sparse":
            rec[fl.FITNESS_KEY] = fl.payload_array(gs.encode(gs.Sparse(np.array([3]), np.array([np.inf], np.float32),
                                                                       (P, N))))
        elif kind == "named":
            rec[fl.FITNESS_KEY] = fl.payload_array(gs.encode({"f": np.zeros((P, N), np.float32)}))
        elif kind == "numpy":
            rec[fl.FITNESS_KEY] = Array(np.zeros((P, N), np.float32))
        elif kind == "extra-array":
            rec["evil"] = Array(np.ones(3, np.float32))
        elif kind == "dense-model":
            out.content["arrays"] = as_record(initial())
        return out
    return mod


KINDS = ["truncated", "garbage", "stype", "shape-lie", "wrong-population", "wrong-partitions", "flat", "nan",
         "inf-sparse", "named", "numpy", "extra-array", "dense-model"]


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_reply_is_rejected_and_the_run_goes_on(kind):
    strategy = strategy_for(2)
    result, _ = run(strategy, make_app(_tamper_mod(kind), fl.EvoFedMod(make())), rounds=2)
    first, second = strategy.rounds
    assert [r["node_id"] for r in first["rejected"]] == [3], first["rejected"]
    assert [r["node_id"] for r in first["replies"]] == [2, 4] and first["failed"] == []
    assert first["uplink_bytes"] == sum(r["payload_bytes"] for r in first["replies"])
    # round 2: node 3 starts over (start model + round 1) and is accepted again
    assert second["rejected"] == [] and [r["node_id"] for r in second["replies"]] == [2, 3, 4]
    assert [d["base"] for d in second["downlink"]] == [False, True, False]
    thetas, _ = reference(make(), [[2, 4], [2, 3, 4]])
    assert_model(result.arrays, thetas[2])


def test_random_corruption_never_crashes_the_server():
    rng = np.random.default_rng(5)

    def flip_mod(msg, context, call_next):
        out = call_next(msg, context)
        if context.node_id == 3:
            data = bytearray(out.content["arrays"][fl.FITNESS_KEY].data)
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
            out.content["arrays"][fl.FITNESS_KEY] = fl.payload_array(bytes(data))
        return out

    strategy = strategy_for(2)
    result, _ = run(strategy, make_app(flip_mod, fl.EvoFedMod(make())), rounds=12)
    assert len(strategy.rounds) == 12
    for e in strategy.rounds:
        accepted = [r["node_id"] for r in e["replies"]]
        assert accepted in ([2, 4], [2, 3, 4]) and len(accepted) + len(e["rejected"]) == 3 and e["failed"] == []
    assert sum(len(e["rejected"]) for e in strategy.rounds) >= 6  # most flips are caught
    assert np.isfinite(np.concatenate([a.numpy().ravel() for a in result.arrays.values()])).all()


# ----------------------------------------------------------------------------- node failures

def test_out_of_sync_node_recovers():
    def forget_mod(msg, context, call_next):
        if context.node_id == 3 and msg.content["config"]["server-round"] == 2:
            del context.state[STATE_ARRAYS]
        return call_next(msg, context)

    strategy = strategy_for(2)
    result, grid = run(strategy, make_app(forget_mod, fl.EvoFedMod(make())), rounds=3)
    assert strategy.rounds[0]["failed"] == []
    assert [f["node_id"] for f in strategy.rounds[1]["failed"]] == [3]
    assert "out of sync" in strategy.rounds[1]["failed"][0]["reason"]
    third = strategy.rounds[2]
    assert third["failed"] == [] and [r["node_id"] for r in third["replies"]] == [2, 3, 4]
    assert {d["node_id"]: (d["base"], d["rounds"]) for d in third["downlink"]} == \
        {2: (False, 1), 3: (True, 2), 4: (False, 1)}
    thetas, _ = reference(make(), [[2, 3, 4], [2, 4], [2, 3, 4]])
    assert_model(result.arrays, thetas[3])
    np.testing.assert_array_equal(grid.contexts[3].state[STATE_ARRAYS]["theta"].numpy(), thetas[2])


def test_messages_without_evofed_settings_are_refused_by_the_mod():
    grid = LocalGrid(make_app(fl.EvoFedMod(make())), 1)
    msg = grid.create_message(RecordDict({"arrays": as_record(initial()), "config": ConfigRecord({"server-round": 1})}),
                              "train", 2, "1")
    reply = list(grid.send_and_receive([msg]))[0]
    assert reply.has_error() and "EvoFedStrategy" in reply.error.reason
    evaluate = grid.create_message(RecordDict({"arrays": as_record(initial()), "config": ConfigRecord({})}),
                                   "evaluate", 2, "1")
    reply = list(grid.send_and_receive([evaluate]))[0]
    assert not reply.has_error() and STATE_ARRAYS not in grid.contexts[2].state


# ----------------------------------------------------------------------------- bytes

def test_byte_counts_are_the_payload_lengths():
    sent, received = [], []

    class Spy(LocalGrid):
        def push_messages(self, messages):
            messages = list(messages)
            for m in messages:
                if m.metadata.message_type == "train":
                    rec = m.content["arrays"]
                    assert all(k == BASE_KEY or k.startswith(STEP_PREFIX) for k in rec.keys())
                    sent.append(sum(len(a.data) for a in rec.values()))
            return super().push_messages(messages)

        def pull_messages(self, message_ids):
            out = list(super().pull_messages(message_ids))
            received.extend(len(m.content["arrays"][fl.FITNESS_KEY].data) for m in out if m.has_content())
            return out

    strategy = strategy_for(2)
    app = make_app(fl.EvoFedMod(make()))
    run(strategy, app, rounds=3, grid=Spy(app, 3))
    assert sum(e["uplink_bytes"] for e in strategy.rounds) == sum(received)
    assert [r["payload_bytes"] for e in strategy.rounds for r in e["replies"]] == received
    assert sum(e["downlink_bytes"] for e in strategy.rounds) == sum(sent)
    dense_fitness = len(gs.encode(np.zeros((P, N), np.float32)))
    for e in strategy.rounds:
        assert e["raw_bytes"] == 3 * 4 * D
        for r in e["replies"]:
            assert r["payload_bytes"] == dense_fitness
            assert r["payload_bytes"] * 10 < 4 * D  # P*N = 16 values (+ a header) instead of d = 505
            assert r["message_bytes"] > r["payload_bytes"]
    assert all(n == dense_fitness for n in sent[3:])  # after the first contact: one round's fitness per node


# ----------------------------------------------------------------------------- fitness sparsification

@pytest.mark.parametrize("kw", [{"keep": 3}, {"bits": 8}, {"keep": 3, "bits": 4, "server_keep": 4}, {"bits": 16}])
def test_fitness_sparsification_passes_through(kw):
    strategy = strategy_for(3, make(**kw))
    result, _ = run(strategy, make_app(fl.EvoFedMod(make(**kw))), rounds=3)
    thetas, downs = reference(make(**kw), [[2, 3, 4]] * 3)
    assert_model(result.arrays, thetas[3])
    assert strategy.history == downs
    dense = len(gs.encode(np.zeros((P, N), np.float32)))
    for e in strategy.rounds:
        assert e["rejected"] == [] and e["failed"] == []
        for r in e["replies"]:
            assert r["selected"] == P * kw.get("keep", N)
            assert r["payload_bytes"] < dense


# ----------------------------------------------------------------------------- arguments

def test_arguments_are_checked():
    with pytest.raises(TypeError, match="make_evofed"):
        fl.EvoFedStrategy("evofed")
    with pytest.raises(TypeError, match="make_evofed"):
        fl.EvoFedMod(None)
    with pytest.raises(ValueError, match="returns"):
        fl.EvoFedMod(make(), returns="delta")
    with pytest.raises(TypeError, match="make_evofed"):
        strategy_for(2, lambda: "not evofed").start(grid=LocalGrid(make_app(), 2),
                                                    initial_arrays=as_record(initial()), num_rounds=1)
    counted = ArrayRecord({**{k: Array(v) for k, v in initial().items()}, "count": Array(np.zeros(1, np.int64))})
    with pytest.raises(ValueError, match="'count'.*float arrays only"):
        strategy_for(2).start(grid=LocalGrid(make_app(), 2), initial_arrays=counted, num_rounds=1)


def test_update_returning_apps():
    from flwr.clientapp import ClientApp
    app = ClientApp(mods=[fl.EvoFedMod(make(), returns="update")])

    @app.train()
    def train(msg, context):
        arrays = {k: a.numpy() for k, a in msg.content["arrays"].items()}
        local = local_train(arrays, int(context.node_config["partition-id"]))
        return Message(RecordDict({"arrays": ArrayRecord({k: Array(local[k] - arrays[k]) for k in local}),
                                   "metrics": MetricRecord({"num-examples": 10})}), reply_to=msg)

    strategy = strategy_for(3)
    result, _ = run(strategy, app, rounds=2)
    thetas, _ = reference(make(), [[2, 3, 4]] * 2)
    assert_model(result.arrays, thetas[2])


# ----------------------------------------------------------------------------- resync by the server's state

TINY = LeastSquares(4, 4, [25 + 5 * pid for pid in range(8)])  # d = 20: a few rounds of fitness outweigh the state


def tiny_initial():
    return {"w": (0.1 * np.random.default_rng(8).standard_normal((4, 4))).astype(np.float32),
            "b": np.zeros(4, np.float32)}


def make_tiny(optimizer=None):
    return lambda: EvoFed(Population(N, 0.05, seed=11, partitions=P), Shaping(zscore=True),
                          None if optimizer is None else optimizer())


class Recording(fl.EvoFedStrategy):
    """Keeps the server's state (model, optimizer) as each round is configured."""

    def configure_train(self, server_round, arrays, config, grid):
        out = super().configure_train(server_round, arrays, config, grid)
        self.at_configure = getattr(self, "at_configure", {})
        self.at_configure[server_round] = (self.theta.copy(), self.evo.state_dict()["optimizer"])
        return out


class Spy(LocalGrid):
    """Records the arrays of every train message: (round, node) -> {key: bytes}."""

    def push_messages(self, messages):
        messages = list(messages)
        self.sent = getattr(self, "sent", {})
        for m in messages:
            if m.metadata.message_type == "train":
                self.sent[(int(m.content["config"]["server-round"]), int(m.metadata.dst_node_id))] = \
                    {k: len(a.data) for k, a in m.content["arrays"].items()}
        return super().push_messages(messages)


def state_sizes(theta, opt):
    """The bytes of the server's state as sent: the dense model and buffers."""
    return len(gs.encode(theta)) + sum(len(gs.encode(v)) for v in opt.values() if isinstance(v, np.ndarray))


def run_tiny(strategy, *mods, rounds, nodes):
    app = TINY.client_app(*mods)
    grid = Spy(app, nodes)
    result = strategy.start(grid=grid, initial_arrays=as_record(tiny_initial()), num_rounds=rounds)
    return result, grid


@pytest.mark.parametrize("optimizer", [None, LaggedMomentum], ids=["adam", "lagged-momentum"])
def test_late_joiners_get_the_servers_state_when_smaller(optimizer):
    seen = {}

    def check_mod(msg, context, call_next):  # inside EvoFedMod: the model and the node's state after catching up
        seen[(int(msg.content["config"]["server-round"]), context.node_id)] = (
            {k: a.numpy() for k, a in msg.content["arrays"].items()},
            {k: a.numpy().copy() for k, a in context.state[STATE_ARRAYS].items()},
            dict(context.state[STATE_INFO]))
        return call_next(msg, context)

    strategy = Recording(make_tiny(optimizer), fraction_train=0.5, min_train_nodes=2, min_available_nodes=4,
                         fraction_evaluate=0.0)
    random.seed(3)
    result, grid = run_tiny(strategy, fl.EvoFedMod(make_tiny(optimizer)), check_mod, rounds=10, nodes=4)
    assert all(e["failed"] == [] and e["rejected"] == [] for e in strategy.rounds)
    participants = [[r["node_id"] for r in e["replies"]] for e in strategy.rounds]
    thetas, downs = reference(make_tiny(optimizer), participants, TINY, tiny_initial())
    final = np.concatenate([result.arrays["w"].numpy().ravel(), result.arrays["b"].numpy().ravel()])
    np.testing.assert_array_equal(final, thetas[10])
    assert strategy.history == downs
    base = len(gs.encode(thetas[0]))
    last = {}
    paths = set()
    for e in strategy.rounds:
        rnd = e["round"]
        theta, opt = strategy.at_configure[rnd]
        np.testing.assert_array_equal(theta, thetas[rnd - 1])
        for d in e["downlink"]:
            nid = d["node_id"]
            prev = last.get(nid)
            # a node holds the model it trained from: round prev - 1 (prev's step comes next time)
            replay = (base if prev is None else 0) + sum(len(downs[r]) for r in downs if (prev or 1) <= r < rnd)
            state = state_sizes(theta, opt)
            assert d["state"] == (state < replay), (rnd, nid, state, replay)
            assert d["base"] == (prev is None and not d["state"])
            assert d["bytes"] == (state if d["state"] else replay)
            keys = grid.sent[(rnd, nid)]
            assert sum(keys.values()) == d["bytes"]  # what was recorded is what was sent
            if d["state"]:
                assert sorted(keys) == sorted(STATE_PREFIX + k for k in
                                              ["theta"] + [f"optimizer.{b}" for b, v in opt.items()
                                                           if isinstance(v, np.ndarray)])
            paths.add("state" if d["state"] else "base" if d["base"] else "rounds")
            model, arrays, info = seen[(rnd, nid)]  # the node trains from, and holds, exactly the server's state
            np.testing.assert_array_equal(np.concatenate([model["w"].ravel(), model["b"].ravel()]), thetas[rnd - 1])
            np.testing.assert_array_equal(arrays["theta"], theta)
            assert sorted(arrays) == sorted(["theta"] + [f"optimizer.{b}" for b, v in opt.items()
                                                         if isinstance(v, np.ndarray)])
            for b, v in opt.items():
                if isinstance(v, np.ndarray):
                    np.testing.assert_array_equal(arrays[f"optimizer.{b}"], v)
            assert info["round"] == rnd - 1
            assert json.loads(info["optimizer"]) == {k: v for k, v in opt.items() if not isinstance(v, np.ndarray)}
            last[nid] = rnd
    assert paths == {"state", "base", "rounds"}, paths
    assert sum(e["downlink_bytes"] for e in strategy.rounds) == sum(sum(k.values()) for k in grid.sent.values())


def _fail_until(rounds):
    """Node 3 answers with an Error in `rounds` (it then needs a full resync)."""
    from flwr.app import Error

    def mod(msg, context, call_next):
        if context.node_id == 3 and int(msg.content["config"]["server-round"]) in rounds:
            return Message(Error(code=0, reason="down"), reply_to=msg)
        return call_next(msg, context)
    return mod


def _tamper_state(kind, at):
    """Outside EvoFedMod: damages the state node 3 is sent in round `at`."""
    d = 20

    def mod(msg, context, call_next):
        if context.node_id != 3 or int(msg.content["config"]["server-round"]) != at:
            return call_next(msg, context)
        rec, config = msg.content["arrays"], msg.content["config"]
        assert OPTIMIZER in config, "the state path was not taken"
        theta = gs.decode(rec[STATE_PREFIX + "theta"].data)
        scalars = json.loads(config[OPTIMIZER])
        if kind == "truncated":
            data = rec[STATE_PREFIX + "theta"].data
            rec[STATE_PREFIX + "theta"] = fl.payload_array(data[:len(data) // 2])
        elif kind == "short":
            rec[STATE_PREFIX + "theta"] = fl.payload_array(gs.encode(theta[:-1]))
        elif kind == "long":
            rec[STATE_PREFIX + "optimizer.m"] = fl.payload_array(gs.encode(np.zeros(d + 1, np.float32)))
        elif kind == "nan":
            theta[3] = np.nan
            rec[STATE_PREFIX + "theta"] = fl.payload_array(gs.encode(theta))
        elif kind == "nan-moment":
            rec[STATE_PREFIX + "optimizer.v"] = fl.payload_array(gs.encode(np.full(d, np.nan, np.float32)))
        elif kind == "float64":
            rec[STATE_PREFIX + "theta"] = fl.payload_array(gs.encode(theta.astype(np.float64)))
        elif kind == "sparse":
            rec[STATE_PREFIX + "theta"] = fl.payload_array(gs.encode(gs.Sparse(np.array([1]), theta[:1], (d,))))
        elif kind == "named":
            rec[STATE_PREFIX + "theta"] = fl.payload_array(gs.encode({"theta": theta}))
        elif kind == "stype":
            rec[STATE_PREFIX + "theta"] = Array(theta)
        elif kind == "missing-buffer":
            del rec[STATE_PREFIX + "optimizer.v"]
        elif kind == "extra-array":
            rec[STATE_PREFIX + "evil"] = fl.payload_array(gs.encode(theta))
        elif kind == "kind":
            config[OPTIMIZER] = json.dumps({**scalars, "kind": "lagged_momentum"})
        elif kind == "steps":
            config[OPTIMIZER] = json.dumps({**scalars, "steps": -1})
        elif kind == "list":
            config[OPTIMIZER] = json.dumps({**scalars, "steps": [1]})
        elif kind == "json":
            config[OPTIMIZER] = "{" * 100000
        elif kind == "with-rounds":
            config[ROUNDS] = "[1]"
        return call_next(msg, context)
    return mod


STATE_KINDS = ["none", "truncated", "short", "long", "nan", "nan-moment", "float64", "sparse", "named", "stype",
               "missing-buffer", "extra-array", "kind", "steps", "list", "json", "with-rounds"]


@pytest.mark.parametrize("kind", STATE_KINDS)
def test_hostile_state_is_an_error_reply(kind):
    strategy = strategy_for(3, make_tiny())
    result, grid = run_tiny(strategy, _fail_until({1, 2, 3}), _tamper_state(kind, 4), fl.EvoFedMod(make_tiny()),
                            rounds=5, nodes=3)
    fourth, fifth = strategy.rounds[3:]
    assert {d["node_id"]: d["state"] for d in fourth["downlink"]} == {2: False, 3: True, 4: False}
    if kind == "none":
        assert fourth["failed"] == [] and [r["node_id"] for r in fourth["replies"]] == [2, 3, 4]
        participants = [[2, 4]] * 3 + [[2, 3, 4]] * 2
    else:
        assert [f["node_id"] for f in fourth["failed"]] == [3]
        assert "gradsparse EvoFedMod" in fourth["failed"][0]["reason"], fourth["failed"][0]["reason"]
        assert {d["node_id"]: d["state"] for d in fifth["downlink"]} == {2: False, 3: True, 4: False}
        participants = [[2, 4]] * 4 + [[2, 3, 4]]
    assert fifth["failed"] == [] and [r["node_id"] for r in fifth["replies"]] == [2, 3, 4]
    thetas, _ = reference(make_tiny(), participants, TINY, tiny_initial())
    final = np.concatenate([result.arrays["w"].numpy().ravel(), result.arrays["b"].numpy().ravel()])
    np.testing.assert_array_equal(final, thetas[5])
    np.testing.assert_array_equal(grid.contexts[3].state[STATE_ARRAYS]["theta"].numpy(), thetas[4])
