"""Ordering and consistency guarantees across connections (which may live on
different shards of corezk): read-your-writes, monotonic reads, pipelined
writes validated against earlier pipelined writes, one event per watcher."""

import threading
import time

import pytest
from kazoo.protocol.states import KazooState

import rawzk
from conftest import start_kazoo, stop_kazoo
from helpers import Collector, TcpProxy, wait_until


def test_write_visible_to_other_connections_after_reply(raw, base, zk):
    """Standalone: once a write is acknowledged, every later read on any
    connection sees it."""
    p = zk.create(base + "/v", b"0")
    writer = raw()
    readers = [raw() for _ in range(4)]
    for i in range(1, 101):
        assert writer.set_data(p, b"%d" % i).err == 0
        for r in readers:
            rep = r.get_data(p)
            assert int(rep.value[0]) >= i, "acknowledged write %d not visible (read %s)" % (
                i, rep.value[0])
    # creates and deletes too
    for i in range(30):
        q = "%s/c%d" % (base, i)
        assert writer.create(q).err == 0
        for r in readers:
            assert r.exists(q).err == 0
        assert writer.delete(q).err == 0
        for r in readers:
            assert r.exists(q).err == rawzk.NONODE


def test_monotonic_reads_while_writing(raw, base, zk, server):
    p = zk.create(base + "/m", b"0")
    stop = threading.Event()
    errors = []

    def writer():
        w = rawzk.connect(str(server))
        try:
            i = 0
            while not stop.is_set() and i < 3000:
                i += 1
                if w.set_data(p, b"%d" % i).err != 0:
                    errors.append("write failed")
                    return
        finally:
            w.close()

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        rs = [raw() for _ in range(3)]
        last = [0, 0, 0]
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            for k, r in enumerate(rs):
                rep = r.get_data(p)
                v = int(rep.value[0])
                assert v >= last[k], "connection %d went back in time: %d after %d" % (
                    k, v, last[k])
                assert rep.value[1].version == v
                last[k] = v
    finally:
        stop.set()
        t.join(10)
    assert not errors


def test_pipelined_versioned_writes(raw, base, zk):
    """Writes pipelined on one connection are validated against the earlier,
    not yet committed writes of the same pipeline (ZooKeeper's outstanding
    changes)."""
    p = zk.create(base + "/cas", b"")
    c = raw()
    xids = [c.send_request(rawzk.OP_SETDATA, rawzk.op_set_data(p, b"%d" % v, v)[1])
            for v in range(50)]
    for v, x in enumerate(xids):
        rep = c.read_reply(x)
        assert rep.err == 0, "setData with version %d failed: %d" % (v, rep.err)
        assert rawzk.R(rep.raw).stat().version == v + 1
    # a stale version in the middle of the pipeline fails alone
    xs = [c.send_request(rawzk.OP_SETDATA, rawzk.op_set_data(p, b"a", 50)[1]),
          c.send_request(rawzk.OP_SETDATA, rawzk.op_set_data(p, b"b", 50)[1]),
          c.send_request(rawzk.OP_SETDATA, rawzk.op_set_data(p, b"c", 51)[1])]
    assert [c.read_reply(x).err for x in xs] == [0, rawzk.BADVERSION, 0]
    assert zk.get(p)[0] == b"c"
    # structure changes that depend on each other
    seq = [
        (rawzk.OP_CREATE, rawzk.op_create(base + "/x")[1], 0),
        (rawzk.OP_CREATE, rawzk.op_create(base + "/x/y")[1], 0),
        (rawzk.OP_CREATE, rawzk.op_create(base + "/x/y")[1], rawzk.NODEEXISTS),
        (rawzk.OP_DELETE, rawzk.op_delete(base + "/x")[1], rawzk.NOTEMPTY),
        (rawzk.OP_DELETE, rawzk.op_delete(base + "/x/y")[1], 0),
        (rawzk.OP_DELETE, rawzk.op_delete(base + "/x", 0)[1], 0),
        (rawzk.OP_SETDATA, rawzk.op_set_data(base + "/x", b"", -1)[1], rawzk.NONODE),
        (rawzk.OP_CREATE, rawzk.op_create(base + "/x", flags=rawzk.EPHEMERAL)[1], 0),
        (rawzk.OP_CREATE, rawzk.op_create(base + "/x/z")[1], rawzk.NOCHILDRENFOREPHEMERALS),
    ]
    xs = [c.send_request(op, body) for op, body, _ in seq]
    assert [c.read_reply(x).err for x in xs] == [e for _, _, e in seq]


def test_concurrent_cas_increments(kz, base, zk):
    from kazoo.exceptions import BadVersionError
    p = zk.create(base + "/counter", b"0")
    clients = [kz() for _ in range(4)]
    errors = []

    def worker(c):
        try:
            done = 0
            while done < 25:
                data, st = c.get(p)
                try:
                    c.set(p, b"%d" % (int(data) + 1), version=st.version)
                    done += 1
                except BadVersionError:
                    pass
        except Exception as e:  # noqa
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in ts)
    data, st = zk.get(p)
    assert data == b"100" and st.version == 100


def test_each_watcher_gets_exactly_one_event(raw, base, zk):
    p = zk.create(base + "/w", b"")
    watchers = [raw() for _ in range(6)]
    for w in watchers:
        assert w.get_data(p, watch=True).err == 0
        assert w.get_children(base, watch=True).err == 0
    zk.set(p, b"1")
    zk.set(p, b"2")
    zk.create(base + "/other")
    for i, w in enumerate(watchers):
        w.wait_event(lambda e: e.type == rawzk.EV_NODE_CHILDREN_CHANGED)
        w.drain_events(0.1)
        assert [(e.type, e.path) for e in w.events] == [
            (rawzk.EV_NODE_DATA_CHANGED, p), (rawzk.EV_NODE_CHILDREN_CHANGED, base)], \
            "watcher %d got %r" % (i, w.events)


def test_watch_not_delivered_without_read_permission(raw, base, zk, server):
    """Events are filtered by the watcher's READ permission (CVE-2024-23944,
    fixed in the Debian 3.8.0 package and in 3.8.4+/3.9.2+)."""
    from kazoo.security import make_digest_acl, OPEN_ACL_UNSAFE
    p = zk.create(base + "/guarded", b"")
    c = raw()
    assert c.get_data(p, watch=True).err == 0
    assert c.exists(p + "/kid", watch=True).err == rawzk.NONODE
    su = start_kazoo(server, auth_data=[("digest", "super:test")])
    try:
        su.set_acls(p, [make_digest_acl("u", "p", all=True)])
        su.set(p, b"changed")          # watcher lacks READ now: no NodeDataChanged
        su.create(p + "/kid")          # child of p: kid's ACL is open -> NodeCreated delivered
    finally:
        stop_kazoo(su)
    ev = c.wait_event(lambda e: e.path == p + "/kid", timeout=10)
    assert ev is not None and ev.type == rawzk.EV_NODE_CREATED
    c.drain_events(0.2)
    assert [(e.type, e.path) for e in c.events] == [(rawzk.EV_NODE_CREATED, p + "/kid")]


def test_kazoo_survives_short_disconnect(server, zk, base):
    """A connection cut shorter than the session timeout: kazoo reconnects with
    the same session (SUSPENDED -> CONNECTED, never LOST), ephemerals stay."""
    proxy = TcpProxy(server)
    states = Collector()
    c = None
    try:
        c = start_kazoo(proxy.addr, timeout=10.0,
                        connection_retry=dict(max_tries=-1, delay=0.1, backoff=1.5,
                                              max_delay=0.3))
        c.add_listener(states)
        sid = c.client_id[0]
        p = c.create(base + "/e", ephemeral=True)
        for _ in range(3):
            proxy.block()
            states.wait_for(lambda s: s == KazooState.SUSPENDED, timeout=10)
            proxy.unblock()
            wait_until(lambda: c.connected, timeout=15, msg="kazoo reconnected")
            states.items.clear()
            assert c.client_id[0] == sid
            assert zk.exists(p).ephemeralOwner == sid
            assert c.get(p)[0] == b""
        assert KazooState.LOST not in states.snapshot()
    finally:
        if c is not None:
            stop_kazoo(c)
        proxy.close()


def test_session_hops_between_connections(raw, base, zk):
    """Reattach the same session on many new connections (they may land on
    different shards); its ephemerals, auth-free state and ownership follow."""
    c = raw(timeout_ms=10000)
    sid, pw = c.session_id, c.passwd
    assert c.create(base + "/e0", flags=rawzk.EPHEMERAL).err == 0
    for i in range(1, 8):
        c.close()
        c = raw(timeout_ms=10000, session_id=sid, passwd=pw)
        assert c.session_id == sid
        assert c.create(base + "/e%d" % i, flags=rawzk.EPHEMERAL).err == 0
        assert sorted(c.get_ephemerals(base).value) == sorted(
            "%s/e%d" % (base, k) for k in range(i + 1))
        st = c.exists(base + "/e0").value
        assert st.ephemeralOwner == sid
    assert c.close_session().err == 0
    assert zk.get_children(base) == []


def test_chroot_client(server, zk, base):
    """kazoo chroot is client-side; the server must send full paths in
    events (the client strips the chroot)."""
    c = start_kazoo(server + base)
    try:
        events = Collector()
        assert c.exists("/x", watch=events) is None
        zk.create(base + "/x", b"1")
        ev = events.wait_count(1)[0]
        assert ev.path == "/x" and ev.type == "CREATED"
        assert c.get("/x")[0] == b"1"
        assert c.create("/s-", sequence=True) == "/s-0000000001"
        assert sorted(c.get_children("/")) == ["s-0000000001", "x"]
        t = c.transaction()
        t.create("/t")
        t.delete("/x")
        assert t.commit() == ["/t", True]
    finally:
        stop_kazoo(c)


def test_set_watches2_persistent(raw, base, zk):
    """SetWatches2 (105) re-registers persistent and recursive watches (no
    catch-up events for them) plus the classic lists."""
    pd = zk.create(base + "/d", b"")
    c = raw()
    zx = c.exists(base).zxid
    zk.set(pd, b"x")
    body = rawzk.W().long(zx).strings([pd]).strings([]).strings([]) \
        .strings([base + "/p"]).strings([base + "/r"]).bytes()
    rep = c.request(rawzk.OP_SETWATCHES2, body)
    assert rep.err == 0
    assert [(e.type, e.path) for e in c.events] == [(rawzk.EV_NODE_DATA_CHANGED, pd)]
    c.events.clear()
    zk.create(base + "/p")
    zk.create(base + "/r")
    zk.create(base + "/r/deep")
    zk.set(base + "/p", b"1")
    zk.create(base + "/f")
    c.exists(base + "/fence", watch=True)
    zk.create(base + "/fence")
    c.wait_event(lambda e: e.path == base + "/fence")
    assert [(e.type, e.path) for e in c.events] == [
        (rawzk.EV_NODE_CREATED, base + "/p"),
        (rawzk.EV_NODE_CREATED, base + "/r"),
        (rawzk.EV_NODE_CREATED, base + "/r/deep"),
        (rawzk.EV_NODE_DATA_CHANGED, base + "/p"),
        (rawzk.EV_NODE_CREATED, base + "/fence"),
    ]


def test_nested_containers_reaped(raw, base):
    c = raw()
    assert c.create_container(base + "/outer").err == 0
    assert c.create_container(base + "/outer/inner").err == 0
    assert c.create(base + "/outer/inner/leaf").err == 0
    assert c.delete(base + "/outer/inner/leaf").err == 0
    wait_until(lambda: c.exists(base + "/outer/inner").err == rawzk.NONODE, timeout=15,
               interval=0.1, msg="inner container reaped")
    wait_until(lambda: c.exists(base + "/outer").err == rawzk.NONODE, timeout=15,
               interval=0.1, msg="outer container reaped after inner went away")


def test_concurrent_random_clients_invariants(server, base, zk):
    """Several connections do random writes concurrently.  Per connection the
    reply zxids never go down; every acknowledged write is visible to all
    connections afterwards; the final tree agrees everywhere."""
    import random
    names = ["%s/n%d" % (base, i) for i in range(8)]
    errors = []
    acked_sets = {}

    def worker(k):
        rnd = random.Random(1000 + k)
        c = rawzk.connect(str(server))
        try:
            last = -1
            for i in range(200):
                p = rnd.choice(names)
                r = rnd.random()
                if r < 0.4:
                    rep = c.create(p, b"%d" % k)
                elif r < 0.6:
                    rep = c.delete(p)
                elif r < 0.85:
                    rep = c.set_data(p, b"%d-%d" % (k, i))
                    if rep.err == 0:
                        acked_sets[(k, p)] = rep.value.mzxid
                else:
                    rep = c.get_children(base)
                if rep.zxid < last:
                    errors.append("conn %d: reply zxid went down %x -> %x" % (k, last, rep.zxid))
                last = max(last, rep.zxid)
        except Exception as e:  # noqa
            errors.append("conn %d: %r" % (k, e))
        finally:
            c.close()

    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not any(t.is_alive() for t in ts)
    assert not errors, errors[:5]
    readers = [rawzk.connect(str(server)) for _ in range(3)]
    try:
        views = [sorted(r.get_children(base).value) for r in readers]
        assert views[0] == views[1] == views[2]
        for p in views[0]:
            data = {r.get_data(base + "/" + p).value for r in readers}
            assert len(data) == 1
            st = readers[0].exists(base + "/" + p).value
            # the node's mzxid is at least the mzxid of every acknowledged set on it
            # that happened after its creation
            for (k, q), mz in acked_sets.items():
                if q == base + "/" + p and mz >= st.czxid:
                    assert st.mzxid >= mz
    finally:
        for r in readers:
            r.close()
