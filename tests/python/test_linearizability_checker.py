"""Unit tests of the history checker (linearizability.py): no server involved.

It must accept valid histories (sequential, concurrent, with ops of unknown
outcome that did or did not take effect) and reject injected violations (a
stale read after a completed write, a lost acknowledged write, reordered
writes, a read of a value never written, session-order anomalies), and it must
stay fast on bounded histories.
"""

import random
import time

import pytest

import linearizability as lin
from linearizability import Op, READ, WRITE, CREATE, DELETE, OK, FAIL, UNKNOWN


def W(p, key, value, t0, t1, zxid=None, version=None, status=OK):
    return Op(process=p, kind=WRITE, key=key, value=value, invoke=t0,
              complete=None if status == UNKNOWN else t1, status=status, zxid=zxid, version=version)


def R(p, key, value, t0, t1, zxid=None, version=None, synced=True, status=OK):
    return Op(process=p, kind=READ, key=key, value=value, invoke=t0,
              complete=None if status == UNKNOWN else t1, status=status, zxid=zxid,
              version=version, synced=synced)


def C(p, key, value, t0, t1, zxid=None, status=OK):
    return Op(process=p, kind=CREATE, key=key, value=value, invoke=t0,
              complete=None if status == UNKNOWN else t1, status=status, zxid=zxid, version=0)


def number(ops):
    for i, op in enumerate(ops):
        op.index = i
    return ops


def lin_ok(ops, initial=None):
    return lin.check_linearizable(number(ops), initial).ok


# ---------------------------------------------------------------------------
# accepted

def test_sequential_history_accepted():
    ops = [W(1, "/a", "x", 0, 1), R(2, "/a", "x", 2, 3), W(2, "/a", "y", 4, 5),
           R(1, "/a", "y", 6, 7)]
    assert lin_ok(ops)


def test_initial_value_and_absent_node():
    assert lin_ok([R(1, "/a", "init", 0, 1)], {"/a": "init"})
    assert lin_ok([R(1, "/a", None, 0, 1), C(2, "/a", "x", 2, 3), R(1, "/a", "x", 4, 5)])
    assert not lin_ok([R(1, "/a", None, 0, 1)], {"/a": "init"})


def test_concurrent_read_may_see_old_or_new():
    # the read overlaps the write: both answers are fine
    for seen in ("x", "y"):
        ops = [W(1, "/a", "x", 0, 1), W(1, "/a", "y", 2, 6), R(2, "/a", seen, 3, 4)]
        assert lin_ok(ops), seen


def test_concurrent_writes_either_order():
    # two overlapping writes, then reads that settle on one of them
    for last in ("x", "y"):
        ops = [W(1, "/a", "x", 0, 5), W(2, "/a", "y", 1, 4), R(3, "/a", last, 6, 7),
               R(1, "/a", last, 8, 9)]
        assert lin_ok(ops), last


def test_linearization_point_must_be_chosen_globally():
    # r1 sees y while both writes are in flight, r2 later sees x: so y took effect
    # first and x after it; a final read of y is then impossible
    base = [W(1, "/a", "x", 0, 10), W(2, "/a", "y", 0, 10), R(3, "/a", "y", 1, 2),
            R(3, "/a", "x", 3, 4)]
    assert lin_ok(base)
    assert not lin_ok(base + [R(4, "/a", "y", 11, 12)])


def test_unknown_write_may_take_effect_late():
    # the write timed out at t=1 but shows up much later: allowed
    ops = [W(1, "/a", "x", 0, 1), W(2, "/a", "lost?", 2, None, status=UNKNOWN),
           R(3, "/a", "x", 3, 4), R(3, "/a", "lost?", 100, 101)]
    assert lin_ok(ops)


def test_unknown_write_may_never_take_effect():
    ops = [W(1, "/a", "x", 0, 1), W(2, "/a", "never", 2, None, status=UNKNOWN),
           R(3, "/a", "x", 3, 4), R(3, "/a", "x", 100, 101)]
    assert lin_ok(ops)


def test_unknown_write_cannot_take_effect_before_invocation():
    ops = [W(1, "/a", "x", 0, 1), R(3, "/a", "late", 2, 3),
           W(2, "/a", "late", 5, None, status=UNKNOWN)]
    assert not lin_ok(ops)


def test_unknown_write_takes_effect_once():
    # seen, then overwritten, then seen again: would need two linearization points
    ops = [W(2, "/a", "u", 0, None, status=UNKNOWN), R(1, "/a", "u", 1, 2),
           W(1, "/a", "x", 3, 4), R(1, "/a", "u", 5, 6)]
    assert not lin_ok(ops)


def test_failed_ops_and_unknown_reads_are_ignored():
    ops = [W(1, "/a", "x", 0, 1), W(2, "/a", "failed", 2, 3, status=FAIL),
           R(3, "/a", "garbage", 4, None, status=UNKNOWN), R(3, "/a", "x", 5, 6)]
    assert lin_ok(ops)


def test_plain_reads_not_in_linearizable_check():
    # a stale read without sync is only sequentially consistent: not a violation here
    ops = number([W(1, "/a", "x", 0, 1, zxid=10, version=1),
                  R(2, "/a", None, 2, 3, synced=False)])
    assert lin.check_linearizable(ops).ok
    assert not lin.check_linearizable(ops, reads="all").ok


def test_keys_are_independent():
    ops = [W(1, "/a", "x", 0, 10), W(1, "/b", "y", 0, 10), R(2, "/a", "x", 1, 2),
           R(2, "/b", None, 3, 4), R(2, "/b", "y", 11, 12)]
    assert lin_ok(ops)


def test_create_needs_absent_node_and_delete_makes_it_absent():
    ok = [C(1, "/a", "x", 0, 1), R(2, "/a", "x", 2, 3),
          Op(process=1, kind=DELETE, key="/a", invoke=4, complete=5, status=OK),
          R(2, "/a", None, 6, 7), C(2, "/a", "y", 8, 9)]
    assert lin_ok(ok)
    # two creates of one node both acknowledged: impossible
    assert not lin_ok([C(1, "/a", "x", 0, 1), C(2, "/a", "y", 2, 3)])


# ---------------------------------------------------------------------------
# rejected: injected violations

def test_rejects_stale_read_after_completed_write():
    ops = [W(1, "/a", "x", 0, 1), W(1, "/a", "y", 2, 3), R(2, "/a", "x", 4, 5)]
    res = lin.check_linearizable(number(ops))
    assert not res.ok
    assert "/a" in res.violations[0] and "cannot place" in res.violations[0]


def test_rejects_lost_acknowledged_write():
    # y was acknowledged, later reads only ever show the older x
    ops = [W(1, "/a", "x", 0, 1), W(2, "/a", "y", 2, 3), R(3, "/a", "x", 10, 11),
           R(1, "/a", "x", 12, 13)]
    assert not lin_ok(ops)
    # also when the lost write is the first one (node reads as its initial value)
    assert not lin_ok([W(1, "/a", "x", 0, 1), R(2, "/a", "init", 2, 3)], {"/a": "init"})


def test_rejects_reordered_writes():
    # x completes before y is invoked, yet a reader sees y and then x
    ops = [W(1, "/a", "x", 0, 1), W(2, "/a", "y", 2, 3), R(3, "/a", "y", 4, 5),
           R(3, "/a", "x", 6, 7)]
    assert not lin_ok(ops)
    # and through the zxid order of acknowledged writes
    ops = number([W(1, "/a", "x", 0, 1, zxid=20, version=2), W(2, "/a", "y", 2, 3, zxid=10, version=1)])
    res = lin.check_write_order(ops)
    assert not res.ok and "larger zxid" in res.violations[0]


def test_rejects_versions_out_of_zxid_order():
    ops = number([W(1, "/a", "x", 0, 1, zxid=10, version=2), W(2, "/a", "y", 0, 1, zxid=11, version=1)])
    res = lin.check_write_order(ops)
    assert not res.ok and "versions" in res.violations[0]


def test_rejects_read_of_value_never_written():
    ops = [W(1, "/a", "x", 0, 1), R(2, "/a", "ghost", 2, 3)]
    assert not lin_ok(ops)
    res = lin.check_sessions(number([W(1, "/a", "x", 0, 1, zxid=5, version=1),
                                     R(2, "/a", "ghost", 2, 3, zxid=6, version=2, synced=False)]))
    assert not res.ok and "never written" in res.violations[0]


def test_rejects_read_concurrent_with_nothing_seeing_future():
    # a read that completed before the write was even invoked
    assert not lin_ok([R(1, "/a", "x", 0, 1), W(2, "/a", "x", 2, 3)])


# ---------------------------------------------------------------------------
# sessions (plain reads)

def test_sessions_accept_stale_but_monotonic_reads():
    ops = number([
        W(1, "/a", "x", 0, 1, zxid=10, version=1),
        W(1, "/a", "y", 2, 3, zxid=11, version=2),
        # client 2 lags behind but never goes back
        R(2, "/a", "x", 4, 5, zxid=10, version=1, synced=False),
        R(2, "/a", "x", 6, 7, zxid=10, version=1, synced=False),
        R(2, "/a", "y", 8, 9, zxid=11, version=2, synced=False),
    ])
    res = lin.check_all(ops)
    assert res.ok, res


def test_sessions_reject_going_back():
    ops = number([
        W(1, "/a", "x", 0, 1, zxid=10, version=1),
        W(1, "/a", "y", 2, 3, zxid=11, version=2),
        R(2, "/a", "y", 4, 5, zxid=11, version=2, synced=False),
        R(2, "/a", "x", 6, 7, zxid=10, version=1, synced=False),
    ])
    res = lin.check_sessions(ops)
    assert not res.ok and "went back" in res.violations[0]


def test_sessions_reject_missing_own_write():
    ops = number([
        W(1, "/a", "x", 0, 1, zxid=10, version=1),
        W(2, "/a", "mine", 2, 3, zxid=12, version=2),
        R(2, "/a", "x", 4, 5, zxid=10, version=1, synced=False),
    ])
    res = lin.check_sessions(ops)
    assert not res.ok


def test_sessions_reject_missing_write_older_than_seen():
    # client 2 saw /b at zxid 20, so its view includes the write of /a at zxid 15
    ops = number([
        W(1, "/a", "new", 0, 1, zxid=15, version=1),
        W(1, "/b", "b", 2, 3, zxid=20, version=1),
        R(2, "/b", "b", 4, 5, zxid=20, version=1, synced=False),
        R(2, "/a", "old", 6, 7, zxid=3, version=0, synced=False),
    ])
    res = lin.check_sessions(ops, initial={"/a": ("old", 3, 0)})
    assert not res.ok and "misses a write" in res.violations[0]


def test_sessions_reject_zxid_mismatch_and_write_before_seen():
    ops = number([
        W(1, "/a", "x", 0, 1, zxid=10, version=1),
        R(2, "/a", "x", 2, 3, zxid=9, version=1, synced=False),
    ])
    assert not lin.check_sessions(ops).ok
    ops = number([
        W(1, "/b", "b", 0, 1, zxid=30, version=1),
        R(2, "/b", "b", 2, 3, zxid=30, version=1, synced=False),
        W(2, "/a", "x", 4, 5, zxid=25, version=1),
    ])
    res = lin.check_sessions(ops)
    assert not res.ok and "not after" in res.violations[0]


# ---------------------------------------------------------------------------
# random histories: valid ones pass, mutated ones fail, and it is fast

def simulate(seed, keys=4, clients=6, ops_per_client=60, unknown_rate=0.05):
    """A linearizable register store: each op takes effect at a random instant
    inside its interval.  Unknown writes take effect (or not) at random, possibly
    after the client gave up."""
    rnd = random.Random(seed)
    ops = []
    for c in range(clients):
        t = rnd.random()
        for n in range(ops_per_client):
            t0 = t + rnd.random() * 0.5
            dur = rnd.choice([0.01, 0.1, 0.5, 2.0])
            key = "/k%d" % rnd.randrange(keys)
            if rnd.random() < 0.5:
                op = Op(process=c, kind=WRITE, key=key, value="c%d-%d" % (c, n), invoke=t0,
                        complete=t0 + dur, status=OK)
                if rnd.random() < unknown_rate:
                    op.status = UNKNOWN
                    op.lp = t0 + rnd.random() * 10 if rnd.random() < 0.5 else None
                    op.complete = None
                else:
                    op.lp = t0 + rnd.random() * dur
            else:
                op = Op(process=c, kind=READ, key=key, invoke=t0, complete=t0 + dur, status=OK,
                        synced=True)
                op.lp = t0 + rnd.random() * dur
            ops.append(op)
            t = t0 + dur
    # apply in linearization-point order
    state = {}
    for op in sorted([o for o in ops if o.lp is not None], key=lambda o: o.lp):
        if op.kind == WRITE:
            state[op.key] = op.value
        else:
            op.value = state.get(op.key)
    for op in ops:
        del op.lp
    return number(ops)


@pytest.mark.parametrize("seed", range(8))
def test_random_valid_histories_accepted(seed):
    ops = simulate(seed)
    res = lin.check_linearizable(ops)
    assert res.ok, res


@pytest.mark.parametrize("seed", range(8))
def test_random_histories_with_an_injected_stale_read_rejected(seed):
    """Take a valid history, find a read that returns the value of a write w
    which is not the last write completed before it, i.e. some write w2 of the
    same key was invoked after w completed and completed before the read was
    invoked: replacing its value by w's is stale for sure."""
    rnd = random.Random(1000 + seed)
    ops = simulate(seed)
    writes = [o for o in ops if o.kind == WRITE and o.status == OK]
    candidates = []
    for r in ops:
        if r.kind != READ:
            continue
        for w in writes:
            if w.key != r.key:
                continue
            later = [w2 for w2 in writes if w2.key == w.key and w2.invoke > w.complete
                     and w2.complete < r.invoke]
            if later:
                candidates.append((r, w))
    assert candidates
    r, w = rnd.choice(candidates)
    r.value = w.value
    assert not lin.check_linearizable(ops).ok


def test_fast_on_bounded_histories():
    # 40 keys x ~100 ops, 10 clients, 5 % unknown writes: well under a second or two
    ops = simulate(7, keys=40, clients=10, ops_per_client=400, unknown_rate=0.05)
    t0 = time.monotonic()
    res = lin.check_linearizable(ops)
    took = time.monotonic() - t0
    assert res.ok, res
    print("checked %d ops on %d keys in %.2fs (%d states)"
          % (len(ops), res.stats["keys"], took, res.stats["states"]))
    assert took < 20


def test_too_large_is_reported_not_hung():
    # many concurrent unknown writes whose values are all read: a big search space
    ops = [W(p, "/a", "u%d" % p, 0, None, status=UNKNOWN) for p in range(18)]
    ops += [R(100, "/a", "u%d" % p, 1 + p, 1.5 + p) for p in range(18)]
    res = lin.check_linearizable(number(ops), max_states=1000)
    assert not res.ok and "inconclusive" in res.violations[0]
