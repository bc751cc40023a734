"""Fault tests on real corezk ensembles (3 and 5 voters, 3 voters + 2 observers)
with recorded client histories checked for linearizability.

Each test starts an ensemble of the release binary on loopback (ensemble.py),
runs kazoo client sessions on different nodes (faultlib.Workload: setData of
unique values, sync+getData and plain getData, sequential and persistent
creates of unique nodes), injects faults, then checks (faultlib.final_check):
zero linearizability / session-order violations in the history, no
acknowledged create lost, every node's tree the same after sync.  Partition
tests also check that no write sent to a node on the minority side is
acknowledged while the partition lasts.

Figures (failover after kill -9 of the leader, replacement of a SIGSTOPped
leader, measured with a raw client that retries quickly) are printed; only
generous liveness bounds are asserted.

Environment:
  COREZK_FAULTS_LONG=1     more cycles and longer phases (minutes)
  COREZK_FAULT_CYCLES=N    restart cycles (default 3, 12 when long)
  COREZK_FAULT_SEED=N      seed of the workload and of the fault choices (printed)
  COREZK_FAULTS_REPORT=F   also append the figures as JSON lines to F
  COREZK_FAULT_BOUND_SCALE=X  multiply the liveness bounds (default 1)
  ZK_TEST_KEEP_DIRS=1      keep every ensemble's dir (failed tests keep theirs anyway)
"""

import contextlib
import json
import os
import random
import time

import pytest

import ensemble
import faultlib
import linearizability as lin
import servers

LONG = os.environ.get("COREZK_FAULTS_LONG", "") not in ("", "0")
CYCLES = int(os.environ.get("COREZK_FAULT_CYCLES", "12" if LONG else "3"))
SEED = int(os.environ.get("COREZK_FAULT_SEED", str(int(time.time()) % 100000)))
PHASE = 3.0 if LONG else 1.5      # seconds of workload between faults

# Liveness bounds: generous (a 2-core machine; other processes' load slows corezk's ZAB clock,
# see the report).  COREZK_FAULT_BOUND_SCALE multiplies them.
_SCALE = float(os.environ.get("COREZK_FAULT_BOUND_SCALE", "1"))
FAILOVER_BOUND = 10.0 * _SCALE    # kill -9 of the leader -> a write acknowledged
STOP_BOUND = 20.0 * _SCALE        # SIGSTOP or cut-off of the leader -> a write acknowledged
REJOIN_BOUND = 30.0 * _SCALE      # a restarted / continued / healed node serves again

pytestmark = [
    pytest.mark.skipif(not servers.corezk_available(),
                       reason="corezk binary not found at %s" % servers.corezk_bin()),
    pytest.mark.timeout(300 if LONG else 150),
]


def say(request, text):
    """Print past pytest's capture (figures are the point of these tests)."""
    cm = request.config.pluginmanager.getplugin("capturemanager")
    ctx = cm.global_and_fixture_disabled() if cm else contextlib.nullcontext()
    with ctx:
        print("\n" + text, flush=True)


def record(name, **figures):
    path = os.environ.get("COREZK_FAULTS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(dict(test=name, seed=SEED, **figures)) + "\n")


@contextlib.contextmanager
def running(request, **kw):
    """A started ensemble, always torn down; its dir is kept when the test fails."""
    ens = ensemble.Ensemble(name=request.node.name[:40], **kw)
    ok = False
    try:
        ens.start()
        yield ens
        ok = True
    finally:
        ens.close(keep=not ok)
        if not ok:
            say(request, "ensemble dir kept: %s (seed %d); what was done:\n%s" % (
                ens.tmpdir, SEED, "\n".join("  %.3f %s" % e for e in ens.events)))


def rotations(nodes):
    return [nodes[i:] + nodes[:i] for i in range(len(nodes))]


def check_end(request, ens, w, extra_violations=()):
    w.stop()
    assert not w.errors, w.errors
    res, rep = faultlib.final_check(ens, w)
    for v in extra_violations:
        res.add(v)
    say(request, "[%s] seed %d, %s; counts %s\n  history: %s" % (
        request.node.name, SEED, {k: v for k, v in rep.items() if k != "summary"},
        w.counts, rep["summary"]))
    assert res.ok, "history / end-state violations:\n%s" % res
    # the checker must have had something to check, and must reject this history made stale
    assert rep["ops_checked"] > 50 and rep["acked_creates"] > 5, rep
    assert rep["canary_rejected"] is True, rep
    return rep


def minority_acks(ops, procs, t_cut, t_heal):
    """Writes invoked on the minority side after the cut and acknowledged before the heal."""
    bad = []
    for op in ops:
        if (op.process.split("/")[0] in procs and op.kind in (lin.WRITE, lin.CREATE)
                and op.status == lin.OK and op.invoke > t_cut and op.complete < t_heal):
            bad.append("minority node acknowledged a write while partitioned: %s" % op.describe())
    return bad


def kill_leader_and_measure(ens, w, bound=FAILOVER_BOUND):
    leader = ens.wait_leader()
    others = [n for n in ens.nodes.values() if n is not leader and n.alive()]
    t0 = time.monotonic()
    ens.kill9(leader)
    t_ack, via = faultlib.first_write_ack(others, w.probe, t0 + bound)
    assert t_ack is not None, "no write acknowledged within %.0fs after kill -9 of leader %d\n%s" % (
        bound, leader.sid, ens.log_tails())
    new = ens.wait_leader(exclude=[leader], timeout=REJOIN_BOUND)
    return leader, new, t_ack - t0


def test_kill9_leader_and_follower_3(request):
    rnd = random.Random(SEED)
    with running(request, voters=3) as ens:
        w = faultlib.Workload(ens, lin.History(), seed=SEED)
        w.setup()
        nodes = list(ens.nodes.values())
        w.add_clients([[n] for n in nodes] + rotations(nodes)).start()
        time.sleep(PHASE)
        failovers = []
        for _ in range(2 if LONG else 1):
            old, new, took = kill_leader_and_measure(ens, w)
            failovers.append(took)
            time.sleep(PHASE)
            ens.restart(old, timeout=REJOIN_BOUND)
            time.sleep(PHASE)
        follower = rnd.choice([n for n in nodes if n.mode() == "follower"])
        ens.kill9(follower)
        took = faultlib.probe_write(ens, w.probe, timeout=FAILOVER_BOUND)
        assert took is not None, "no write acknowledged with a follower down"
        time.sleep(PHASE)
        ens.restart(follower, timeout=REJOIN_BOUND)
        time.sleep(PHASE)
        say(request, "FIGURE failover after kill -9 of the leader (3 nodes): %s s"
            % ", ".join("%.3f" % f for f in failovers))
        record("kill9_3", failover_s=failovers)
        check_end(request, ens, w)


def test_sigstop_leader_3(request):
    with running(request, voters=3) as ens:
        w = faultlib.Workload(ens, lin.History(), seed=SEED)
        w.setup()
        nodes = list(ens.nodes.values())
        w.add_clients([[n] for n in nodes] + rotations(nodes)).start()
        time.sleep(PHASE)
        figures = []
        for _ in range(2 if LONG else 1):
            leader = ens.wait_leader()
            others = [n for n in nodes if n is not leader]
            t0 = time.monotonic()
            ens.pause(leader)
            t_ack, _ = faultlib.first_write_ack(others, w.probe, t0 + STOP_BOUND)
            assert t_ack is not None, "no write acknowledged within %.0fs after SIGSTOP of leader %d" % (
                STOP_BOUND, leader.sid)
            new = ens.wait_leader(exclude=[leader], timeout=REJOIN_BOUND)
            figures.append(t_ack - t0)
            time.sleep(PHASE)
            t1 = time.monotonic()
            ens.resume(leader)
            # the old leader must step down and follow the new one
            deadline = t1 + REJOIN_BOUND
            while leader.mode() != "follower":
                assert time.monotonic() < deadline, "old leader %d did not rejoin as follower: %r\n%s" % (
                    leader.sid, ens.modes(), ens.log_tails())
                time.sleep(0.05)
            rejoin = time.monotonic() - t1
            assert ens.wait_leader() is new
            say(request, "FIGURE SIGSTOP leader %d: new leader %d acknowledged a write after %.3f s; "
                "old leader following %.3f s after SIGCONT" % (leader.sid, new.sid, t_ack - t0, rejoin))
            time.sleep(PHASE)
        record("sigstop_3", replacement_s=figures)
        check_end(request, ens, w)


def partition_leader(request, ens, w, minority_extra=(), mode=ensemble.BLACKHOLE):
    """Cut the leader (and minority_extra) off from the rest; check the majority
    elects a leader and writes, the minority stops serving; heal.  Returns
    (minority process names, t_cut, t_heal, seconds to a majority write)."""
    leader = ens.wait_leader()
    minority = [leader] + list(minority_extra)
    majority = [n for n in ens.nodes.values() if n not in minority]
    since = time.time()
    ens.partition([minority, majority], mode=mode)
    t_cut = time.monotonic()
    took = faultlib.probe_write(ens, w.probe, nodes=majority, timeout=STOP_BOUND)
    assert took is not None, "majority side acknowledged no write within %.0fs of the partition" % STOP_BOUND
    new = ens.wait_leader(among=majority, timeout=REJOIN_BOUND)
    # the minority side stops serving (it has no quorum)
    deadline = time.monotonic() + REJOIN_BOUND
    while any(n.mode() in ("leader", "follower") for n in minority):
        assert time.monotonic() < deadline, "minority %r still serving: %r" % (
            [n.sid for n in minority], ens.modes())
        time.sleep(0.05)
    stepped_down = time.monotonic() - t_cut
    time.sleep(PHASE)
    t_heal = time.monotonic()
    ens.heal()
    ens.wait_ready(timeout=REJOIN_BOUND)
    healed = time.monotonic() - t_heal
    overlap = faultlib.leader_overlap(leader, new, since)
    say(request, "FIGURE partition (%s) of %r: majority write after %.3f s, minority stopped serving "
        "after %.3f s, all serving %.3f s after heal; the old leader led on %s s after the new one "
        "served" % (mode, [n.sid for n in minority], took, stepped_down, healed,
                    "?" if overlap is None else "%.3f" % overlap))
    return t_cut, t_heal, took


def test_partition_isolated_leader_3(request):
    with running(request, voters=3, proxied=True) as ens:
        w = faultlib.Workload(ens, lin.History(), seed=SEED)
        w.setup()
        nodes = list(ens.nodes.values())
        w.add_clients(rotations(nodes))           # roaming sessions
        time.sleep(0.1)
        violations = []
        rounds = [ensemble.BLACKHOLE, ensemble.RESET] * (2 if LONG else 1)
        for i, mode in enumerate(rounds):
            leader = ens.wait_leader()
            # sessions pinned to the node about to be cut off (and only to it)
            name = "m%d_" % i
            w.add_clients([[leader], [leader]], name=name).start()
            time.sleep(PHASE)
            t_cut, t_heal, _ = partition_leader(request, ens, w, mode=mode)
            violations += minority_acks(w.h.snapshot(), {"%s%d" % (name, j) for j in range(len(w.threads))},
                                        t_cut, t_heal)
            time.sleep(PHASE)
        check_end(request, ens, w, violations)


def test_restart_cycles_3(request):
    rnd = random.Random(SEED + 1)
    with running(request, voters=3) as ens:
        w = faultlib.Workload(ens, lin.History(), seed=SEED)
        w.setup()
        nodes = list(ens.nodes.values())
        w.add_clients([[n] for n in nodes] + rotations(nodes)).start()
        time.sleep(PHASE)
        done = []
        for _ in range(CYCLES):
            leader = ens.wait_leader(timeout=REJOIN_BOUND)
            victim = leader if rnd.random() < 0.5 else rnd.choice([n for n in nodes if n is not leader])
            how = rnd.choice(["kill9", "kill9", "term"])
            (ens.kill9 if how == "kill9" else ens.terminate)(victim)
            done.append("%s %d%s" % (how, victim.sid, "(leader)" if victim is leader else ""))
            took = faultlib.probe_write(ens, w.probe, timeout=FAILOVER_BOUND)
            assert took is not None, "no write acknowledged within %.0fs after %s" % (
                FAILOVER_BOUND, done[-1])
            time.sleep(rnd.uniform(0.2, PHASE))
            if rnd.random() < 0.3:
                # crash again while recovering / syncing with the leader
                ens.restart(victim, wait=False)
                time.sleep(rnd.uniform(0.0, 0.3))
                ens.kill9(victim)
                done[-1] += "+kill9 while recovering"
            ens.restart(victim, timeout=REJOIN_BOUND)
            time.sleep(rnd.uniform(0.2, PHASE))
        # every node crashes at once, under load, and comes back on its data dir
        for n in nodes:
            ens.kill9(n)
        done.append("kill9 all")
        for n in nodes:
            ens.restart(n, wait=False)
        ens.wait_ready(timeout=REJOIN_BOUND)
        took = faultlib.probe_write(ens, w.probe, timeout=FAILOVER_BOUND)
        assert took is not None, "no write acknowledged within %.0fs after the whole ensemble restarted" % (
            FAILOVER_BOUND)
        time.sleep(PHASE)
        say(request, "restart cycles: %s" % ", ".join(done))
        check_end(request, ens, w)


def test_five_nodes(request):
    with running(request, voters=5, proxied=True) as ens:
        w = faultlib.Workload(ens, lin.History(), seed=SEED)
        w.setup()
        nodes = list(ens.nodes.values())
        w.add_clients([[n] for n in nodes[:3]] + rotations(nodes)[:3]).start()
        time.sleep(PHASE)
        old, new, took = kill_leader_and_measure(ens, w)
        say(request, "FIGURE failover after kill -9 of the leader (5 nodes, proxied): %.3f s" % took)
        record("kill9_5", failover_s=took)
        time.sleep(PHASE)
        ens.restart(old, timeout=REJOIN_BOUND)
        time.sleep(PHASE)
        # a minority of two: the leader and one follower, with sessions pinned to each
        leader = ens.wait_leader()
        buddy = [n for n in nodes if n is not leader][0]
        w.add_clients([[leader], [buddy]], name="m").start()
        time.sleep(PHASE)
        t_cut, t_heal, _ = partition_leader(request, ens, w, minority_extra=[buddy])
        procs = {t.name for t in w.threads if t.name.startswith("m")}
        violations = minority_acks(w.h.snapshot(), procs, t_cut, t_heal)
        time.sleep(PHASE)
        # a follower cut off alone (connections reset): it stops serving, then catches up
        leader = ens.wait_leader()
        lone = [n for n in nodes if n is not leader][-1]
        ens.partition([[lone], [n for n in nodes if n is not lone]], mode=ensemble.RESET)
        deadline = time.monotonic() + REJOIN_BOUND
        while lone.mode() in ("leader", "follower"):
            assert time.monotonic() < deadline, "cut-off follower %d still serving" % lone.sid
            time.sleep(0.05)
        assert faultlib.probe_write(ens, w.probe, nodes=[n for n in nodes if n is not lone],
                                    timeout=STOP_BOUND) is not None
        time.sleep(PHASE)
        ens.heal()
        ens.wait_ready(timeout=REJOIN_BOUND)
        time.sleep(PHASE)
        check_end(request, ens, w, violations)


def test_observers(request):
    with running(request, voters=3, observers=2) as ens:
        w = faultlib.Workload(ens, lin.History(), seed=SEED)
        w.setup()
        voters, observers = ens.voters, ens.observers
        w.add_clients([[o] for o in observers] + [[v] for v in voters[:1]]
                      + [[observers[0]] + voters, [observers[1]] + voters]).start()
        time.sleep(PHASE)
        old, new, took = kill_leader_and_measure(ens, w)
        assert not new.observer
        say(request, "FIGURE failover after kill -9 of the leader (3 voters + 2 observers): %.3f s" % took)
        record("kill9_observers", failover_s=took)
        time.sleep(PHASE)
        ens.restart(old, timeout=REJOIN_BOUND)
        time.sleep(PHASE)
        # an observer paused, then continued; the other killed and restarted
        o1, o2 = observers
        ens.pause(o1)
        time.sleep(PHASE * 2)
        ens.resume(o1)
        ens.kill9(o2)
        time.sleep(PHASE)
        ens.restart(o2, timeout=REJOIN_BOUND)
        assert ens.wait_serving(o1, timeout=REJOIN_BOUND) == "observer"
        assert o2.mode() == "observer"
        time.sleep(PHASE)
        check_end(request, ens, w)




def test_partition_paused_leader_sync_read(request):
    """The leader is cut off (blackhole) and paused (a GC or VM stall) at the
    same moment; the majority elects a new leader and acknowledges a write; the
    old leader wakes up and a client of it issues sync + getData.  A linearizable sync+read
    must not return the value from before the acknowledged write.  (The kazoo
    workload runs before the cut only: a write in flight at the cut would hold
    the old leader's sync behind it and hide the stale answer.)"""
    with running(request, voters=3, proxied=True) as ens:
        h = lin.History()
        w = faultlib.Workload(ens, h, seed=SEED)
        w.setup()
        leader = ens.wait_leader()
        majority = [n for n in ens.nodes.values() if n is not leader]
        nodes = list(ens.nodes.values())
        w.add_clients(rotations(nodes)).start()
        old_side = faultlib.RawRecorder(h, leader, "old")
        key = w.keys[0]
        time.sleep(PHASE)
        w.stop()
        old_side.sync_read(key)
        since = time.time()
        ens.partition([[leader], majority])
        ens.pause(leader)
        # a write acknowledged by the majority (recorded) while the old leader sleeps...
        deadline = time.monotonic() + STOP_BOUND
        acked = None
        while acked is None and time.monotonic() < deadline:
            try:
                new_side = faultlib.RawRecorder(h, majority[0], "new", timeout=1.0)
            except Exception:
                time.sleep(0.05)
                continue
            op = new_side.set(key, lin.unique_value("new"))
            new_side.close()
            if op.status == lin.OK:
                acked = op
        ens.resume(leader)
        assert acked is not None, "majority acknowledged no write within %.0fs" % STOP_BOUND
        # ... then sync + read on the old leader's side (and a write there, which must not be acked)
        read = old_side.sync_read(key)
        wrote = old_side.set(key, lin.unique_value("old"))
        old_side.close()
        new = ens.wait_leader(among=majority, timeout=REJOIN_BOUND)
        overlap = faultlib.leader_overlap(leader, new, since)
        say(request, "old leader's sync+read after the majority's write: %s\n  its write: %s\n"
            "  the old leader led on %s s after the new one served" % (
                read.describe(), wrote.describe(), overlap))
        violations = []
        if wrote.status == lin.OK:
            violations.append("the cut-off old leader acknowledged a write: %s" % wrote.describe())
        w.stop()
        res, rep = faultlib.final_check(ens, w)
        for v in violations:
            res.add(v)
        say(request, "[%s] seed %d, %s" % (request.node.name, SEED, rep["summary"]))
        # nothing but the old side wrote the key after the acknowledged write: any other value is stale
        stale = read.status == lin.OK and read.value != acked.value
        on_key = [v for v in res.violations if "key %s " % key in v]
        if stale:
            # A deposed leader must not answer sync from its stale state (it answers a sync only
            # after a quorum answered a ping round sent after the sync arrived).
            assert on_key, "the checker missed a stale sync+read: %s after %s" % (
                read.describe(), acked.describe())
        assert res.ok, "history / end-state violations:\n%s" % res
