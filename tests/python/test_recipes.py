"""kazoo recipes against the server.  Every wait is bounded."""

import threading
import time

import pytest
from kazoo.exceptions import LockTimeout
from kazoo.recipe.cache import TreeCache, TreeEvent

from helpers import Collector, wait_until

WAIT = 15.0


def run_threads(targets, timeout=WAIT):
    errors = []

    def wrap(fn):
        def inner():
            try:
                fn()
            except BaseException as e:  # noqa
                errors.append(e)
        return inner

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads still running after %.0fs" % timeout
    if errors:
        raise errors[0]


def _try_acquire(lock, timeout):
    try:
        return lock.acquire(timeout=timeout)
    except LockTimeout:
        return False


def test_lock_exclusive_and_handover(zk, kz, base):
    a, b = kz(), kz()
    la = a.Lock(base + "/lock", "A")
    lb = b.Lock(base + "/lock", "B")
    assert la.acquire(timeout=WAIT)
    assert not _try_acquire(lb, 0.5)
    assert lb.acquire(blocking=False) is False
    assert la.contenders() == ["A"]
    got = threading.Event()

    def waiter():
        if lb.acquire(timeout=WAIT):
            got.set()

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    wait_until(lambda: len(la.contenders()) == 2, timeout=WAIT, msg="B queued")
    assert la.contenders() == ["A", "B"]
    assert not got.is_set()
    la.release()
    assert got.wait(WAIT), "B never got the lock after A released"
    t.join(WAIT)
    assert lb.contenders() == ["B"]
    lb.release()


def test_lock_released_when_session_closes(kz, base):
    a, b = kz(), kz()
    assert a.Lock(base + "/lock", "A").acquire(timeout=WAIT)
    lb = b.Lock(base + "/lock", "B")
    assert not _try_acquire(lb, 0.3)
    a.stop()
    assert lb.acquire(timeout=WAIT)
    lb.release()


def test_lock_mutual_exclusion_counter(kz, zk, base):
    zk.create(base + "/value", b"0")
    clients = [kz() for _ in range(3)]
    inside = []
    overlap = []

    def worker(c, name):
        def run():
            lock = c.Lock(base + "/mutex", name)
            for _ in range(8):
                with lock:
                    inside.append(name)
                    if len(inside) > 1:
                        overlap.append(list(inside))
                    v = int(c.get(base + "/value")[0])
                    c.set(base + "/value", str(v + 1).encode())
                    inside.remove(name)
        return run

    run_threads([worker(c, "w%d" % i) for i, c in enumerate(clients)], timeout=60)
    assert not overlap
    assert zk.get(base + "/value")[0] == b"24"


def test_read_write_lock(kz, base):
    a, b, c = kz(), kz(), kz()
    r1 = a.ReadLock(base + "/rw", "r1")
    r2 = b.ReadLock(base + "/rw", "r2")
    w = c.WriteLock(base + "/rw", "w")
    assert r1.acquire(timeout=WAIT)
    assert r2.acquire(timeout=WAIT)          # readers share
    assert not _try_acquire(w, 0.3)          # writer excluded
    r1.release()
    r2.release()
    assert w.acquire(timeout=WAIT)
    assert not _try_acquire(a.ReadLock(base + "/rw", "r3"), 0.3)
    w.release()


def test_semaphore(kz, base):
    clients = [kz() for _ in range(3)]
    sems = [c.Semaphore(base + "/sem", "s%d" % i, max_leases=2) for i, c in enumerate(clients)]
    assert sems[0].acquire(timeout=WAIT)
    assert sems[1].acquire(timeout=WAIT)
    assert sems[2].acquire(blocking=False) is False
    assert sorted(sems[0].lease_holders()) == ["s0", "s1"]
    sems[0].release()
    assert sems[2].acquire(timeout=WAIT)
    assert sorted(sems[1].lease_holders()) == ["s1", "s2"]
    sems[1].release()
    sems[2].release()
    assert sems[0].lease_holders() == []


def test_election(kz, base):
    clients = [kz() for _ in range(3)]
    leaders = Collector()
    stop_events = {i: threading.Event() for i in range(3)}
    elections = [c.Election(base + "/election", "c%d" % i) for i, c in enumerate(clients)]
    current = []

    def leader_fn(i):
        current.append(i)
        if len(current) > 1:
            leaders(("overlap", list(current)))
        leaders(i)
        stop_events[i].wait(WAIT)
        current.remove(i)

    threads = []
    for i, e in enumerate(elections):
        t = threading.Thread(target=e.run, args=(leader_fn, i), daemon=True)
        t.start()
        threads.append(t)
    order = []
    for n in range(3):
        items = leaders.wait_count(n + 1, timeout=WAIT)
        leader = items[n]
        assert isinstance(leader, int), items
        order.append(leader)
        if n == 0:
            wait_until(lambda: len(elections[0].contenders()) == 3, timeout=WAIT,
                       msg="all three contenders registered")
        stop_events[leader].set()
    for t in threads:
        t.join(WAIT)
    assert sorted(order) == [0, 1, 2]
    assert not [x for x in leaders.snapshot() if not isinstance(x, int)]


def test_barrier(kz, base):
    a, b = kz(), kz()
    bar_a = a.Barrier(base + "/barrier")
    bar_b = b.Barrier(base + "/barrier")
    bar_a.create()
    assert bar_b.wait(timeout=0.3) is False
    released = threading.Event()

    def waiter():
        if bar_b.wait(timeout=WAIT):
            released.set()

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    bar_a.remove()
    assert released.wait(WAIT)
    t.join(WAIT)
    assert bar_b.wait(timeout=0.1) is True


def test_double_barrier(kz, base):
    n = 3
    clients = [kz() for _ in range(n)]
    entered = Collector()
    left = Collector()

    def member(i):
        def run():
            db = clients[i].DoubleBarrier(base + "/dbar", n, identifier="m%d" % i)
            db.enter()
            entered(i)
            db.leave()
            left(i)
        return run

    run_threads([member(i) for i in range(n)], timeout=30)
    assert sorted(entered.snapshot()) == [0, 1, 2]
    assert sorted(left.snapshot()) == [0, 1, 2]


def test_double_barrier_blocks_until_full(kz, base):
    a = kz()
    db = a.DoubleBarrier(base + "/dbar2", 2, identifier="only")
    result = []
    t = threading.Thread(target=lambda: (db.enter(), result.append("in")), daemon=True)
    t.start()
    b = kz()
    wait_until(lambda: b.exists(base + "/dbar2") is not None
               and len(b.get_children(base + "/dbar2")) == 1, timeout=WAIT,
               msg="first member registered")
    # the single member is waiting: no ready node, not passed
    assert b.exists(base + "/dbar2/ready") is None
    assert result == []
    db2 = b.DoubleBarrier(base + "/dbar2", 2, identifier="second")
    db2.enter()
    t.join(WAIT)
    assert result == ["in"]
    run_threads([db.leave, db2.leave], timeout=30)


def test_counter(kz, base):
    a, b = kz(), kz()
    ca = a.Counter(base + "/counter")
    cb = b.Counter(base + "/counter")
    ca += 5
    cb -= 2
    assert ca.value == 3 and cb.value == 3

    def inc(c):
        def run():
            for _ in range(10):
                c.__add__(1)
        return run

    run_threads([inc(a.Counter(base + "/counter")), inc(b.Counter(base + "/counter"))],
                timeout=60)
    assert a.Counter(base + "/counter").value == 23
    fc = a.Counter(base + "/fcounter", default=0.0)
    fc += 2.5
    assert fc.value == 2.5


def test_queue(kz, base):
    a, b = kz(), kz()
    qa = a.Queue(base + "/queue")
    qb = b.Queue(base + "/queue")
    qa.put(b"one")
    qa.put(b"two")
    qa.put(b"urgent", priority=1)
    assert len(qb) == 3
    assert qb.get() == b"urgent"
    assert qb.get() == b"one"
    assert qa.get() == b"two"
    assert qa.get() is None
    assert len(qa) == 0


def test_locking_queue(kz, base):
    a, b = kz(), kz()
    qa = a.LockingQueue(base + "/lq")
    qb = b.LockingQueue(base + "/lq")
    qa.put(b"x")
    qa.put_all([b"y", b"z"], priority=50)
    assert len(qa) == 3
    first = qb.get(timeout=WAIT)
    assert first == b"y"
    assert qb.holds_lock()
    second = qa.get(timeout=WAIT)
    assert second == b"z"    # y is locked by b
    assert qa.consume()
    assert qb.release()      # y goes back
    assert qa.get(timeout=WAIT) == b"y"
    assert qa.consume()
    assert qb.get(timeout=WAIT) == b"x"
    assert qb.consume()
    assert len(qa) == 0
    assert qa.get(timeout=0.3) is None


def test_party(kz, base):
    a, b = kz(), kz()
    pa = a.Party(base + "/party", "alice")
    pb = b.Party(base + "/party", "bob")
    pa.join()
    pb.join()
    assert sorted(pa) == ["alice", "bob"]
    assert len(pb) == 2
    pb.leave()
    assert list(pa) == ["alice"]
    sa = a.ShallowParty(base + "/shallow", "s1")
    sb = b.ShallowParty(base + "/shallow", "s2")
    sa.join()
    sb.join()
    assert sorted(sb) == ["s1", "s2"]
    b.stop()   # ephemeral membership ends with the session
    assert list(sa) == ["s1"]


def test_lease(kz, base):
    from kazoo.recipe.lease import NonBlockingLease
    import datetime
    a, b = kz(), kz()
    dur = datetime.timedelta(seconds=30)
    assert bool(NonBlockingLease(a, base + "/lease", dur, identifier="a"))
    assert not bool(NonBlockingLease(b, base + "/lease", dur, identifier="b"))
    assert bool(NonBlockingLease(a, base + "/lease", dur, identifier="a"))


def test_tree_cache(zk, kz, base):
    events = Collector()
    cache = TreeCache(zk, base)
    cache.listen(lambda ev: events(ev))
    cache.start()
    try:
        events.wait_for(lambda e: e.event_type == TreeEvent.INITIALIZED, timeout=WAIT)
        other = kz()

        def seen(kind, path):
            return events.wait_for(lambda e: e.event_type == kind and e.event_data is not None
                                   and e.event_data.path == path, timeout=WAIT)

        other.create(base + "/a", b"1")
        seen(TreeEvent.NODE_ADDED, base + "/a")
        other.create(base + "/a/b", b"2")
        seen(TreeEvent.NODE_ADDED, base + "/a/b")
        other.set(base + "/a", b"3")
        seen(TreeEvent.NODE_UPDATED, base + "/a")
        other.delete(base + "/a/b")
        events.wait_for(lambda e: e.event_type == TreeEvent.NODE_REMOVED
                        and e.event_data.path == base + "/a/b", timeout=WAIT)
        wait_until(lambda: cache.get_data(base + "/a") is not None
                   and cache.get_data(base + "/a").data == b"3", timeout=WAIT,
                   msg="cache sees the update")
        assert cache.get_children(base) == frozenset(["a"])
        assert cache.get_children(base + "/a") == frozenset()
    finally:
        cache.close()


def test_children_watch_stop_and_data_watch_stop(zk, kz, base):
    calls = Collector()

    def cw(children):
        calls(("c", sorted(children)))
        return len(children) < 1   # returning False stops the watch

    zk.ChildrenWatch(base, cw)
    other = kz()
    other.create(base + "/one")
    calls.wait_for(lambda x: x == ("c", ["one"]))
    other.create(base + "/two")
    d_calls = Collector()

    def dw(data, stat):
        d_calls(data)
        return data != b"stop"

    other.create(base + "/d", b"go")
    zk.DataWatch(base + "/d", dw)
    d_calls.wait_for(lambda x: x == b"go")
    other.set(base + "/d", b"stop")
    d_calls.wait_for(lambda x: x == b"stop")
    other.set(base + "/d", b"after")
    # fence: a new DataWatch on the same client sees 'after'; the stopped one never does
    fence = Collector()
    zk.DataWatch(base + "/d", lambda data, stat: fence(data))
    fence.wait_for(lambda x: x == b"after")
    assert b"after" not in d_calls.snapshot()
    assert ("c", ["one", "two"]) not in calls.snapshot()
