"""Durability: a server restarted on the same data directory (after SIGTERM or
SIGKILL) has every acknowledged write, the same Stats, continuing counters,
and the sessions that were alive."""

import time

import pytest
from kazoo.protocol.states import KazooState
from kazoo.security import make_digest_acl

import rawzk
from conftest import start_kazoo, stop_kazoo
from helpers import Collector, wait_until


def snapshot(zk, path):
    """{path: (data, stat, acl)} for a subtree."""
    out = {}

    def walk(p):
        data, st = zk.get(p)
        acl, _ = zk.get_acls(p)
        out[p] = (data, st, sorted((a.perms, a.id.scheme, a.id.id) for a in acl))
        for ch in sorted(zk.get_children(p)):
            walk(p.rstrip("/") + "/" + ch)
    walk(path)
    return out


def populate(zk, b):
    zk.create(b, b"root")
    for i in range(3):
        zk.create(b + "/seq-", b"%d" % i, sequence=True)
    zk.delete(b + "/seq-0000000001")
    zk.create(b + "/a", b"A")
    zk.set(b + "/a", b"A2")
    zk.create(b + "/null", None)
    zk.create(b + "/secret", b"s", acl=[make_digest_acl("u", "p", all=True),
                                        make_digest_acl("v", "q", read=True)])
    t = zk.transaction()
    t.create(b + "/m1", b"x")
    t.create(b + "/m1/m2", b"y")
    t.set_data(b + "/a", b"A3")
    t.commit()
    zk.set_acls(b + "/m1", [make_digest_acl("u", "p", all=True)] +
                [a for a in zk.get_acls(b + "/a")[0]])
    zk.create(b + "/big", bytes(range(256)) * 2000)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
def test_tree_survives_restart(fresh_server, hard):
    b = "/durable"
    zk = start_kazoo(fresh_server, auth_data=[("digest", "super:test")])
    try:
        populate(zk, b)
        before = snapshot(zk, b)
        root_before = zk.exists("/")
        last_zxid = zk.exists(b + "/big").czxid
    finally:
        stop_kazoo(zk)
    fresh_server.proc.restart(hard=hard)
    zk = start_kazoo(fresh_server, auth_data=[("digest", "super:test")])
    try:
        assert zk.exists(b) is not None, "%s lost across restart" % b
        after = snapshot(zk, b)
        assert sorted(after) == sorted(before)
        for p in before:
            assert after[p] == before[p], "%s changed across restart:\n%r\n%r" % (
                p, before[p], after[p])
        assert zk.exists("/") == root_before
        # counters continue
        # 3 seq + a, null, secret, m1, big = 8 children ever created
        assert zk.create(b + "/seq-", sequence=True) == b + "/seq-0000000008"
        st = zk.exists(b + "/seq-0000000008")
        assert st.czxid > last_zxid
        assert sorted(zk.get_children("/zookeeper")) == ["config", "quota"]
    finally:
        stop_kazoo(zk)


@pytest.mark.timeout(120)
def test_acknowledged_pipelined_writes_survive_sigkill(fresh_server):
    zk = start_kazoo(fresh_server)
    try:
        zk.create("/pipe")
        futures = [zk.create_async("/pipe/n%04d" % i, b"%d" % i) for i in range(300)]
        futures += [zk.set_async("/pipe", b"v%d" % i) for i in range(50)]
        for f in futures:
            f.get(timeout=30)
    finally:
        stop_kazoo(zk)
    fresh_server.proc.restart(hard=True)
    zk = start_kazoo(fresh_server)
    try:
        assert zk.exists("/pipe") is not None, "acknowledged writes lost after SIGKILL"
        assert len(zk.get_children("/pipe")) == 300
        data, st = zk.get("/pipe")
        assert data == b"v49" and st.version == 50
        assert zk.get("/pipe/n0299")[0] == b"299"
    finally:
        stop_kazoo(zk)


@pytest.mark.timeout(120)
def test_session_and_ephemerals_survive_restart(fresh_server):
    """A kazoo client keeps its session across a quick server restart: it
    reconnects with its session id (and a lastZxidSeen the restarted server
    must accept), and its ephemeral node is still there."""
    states = Collector()
    c = start_kazoo(fresh_server, timeout=20.0,
                    connection_retry=dict(max_tries=-1, delay=0.1, backoff=1.5, max_delay=0.5))
    try:
        c.add_listener(states)
        sid = c.client_id[0]
        c.create("/eph", b"e", ephemeral=True)
        c.create("/persist", b"p")
        fresh_server.proc.restart(hard=False)
        states.wait_for(lambda s: s == KazooState.SUSPENDED, timeout=20)
        wait_until(lambda: c.connected, timeout=30,
                   msg="kazoo to reconnect its session to the restarted server")
        assert KazooState.LOST not in states.snapshot()
        assert c.client_id[0] == sid
        st = c.exists("/eph")
        assert st is not None and st.ephemeralOwner == sid
        assert c.get("/persist")[0] == b"p"
        c.set("/persist", b"after")
        other = start_kazoo(fresh_server)
        try:
            c.stop()   # closeSession after the restart removes the ephemeral
            assert other.exists("/eph") is None
            assert other.get("/persist")[0] == b"after"
        finally:
            stop_kazoo(other)
    finally:
        stop_kazoo(c)


@pytest.mark.timeout(120)
def test_session_expires_after_restart(fresh_server):
    """A session whose client never comes back after the restart still
    expires (its ephemerals are deleted) on the restarted server."""
    r = rawzk.connect(fresh_server, timeout_ms=4000)
    assert r.create("/orphan", flags=rawzk.EPHEMERAL).err == 0
    r.close()
    fresh_server.proc.restart(hard=False)
    zk = start_kazoo(fresh_server)
    try:
        wait_until(lambda: zk.exists("/orphan") is None, timeout=30, interval=0.2,
                   msg="ephemeral of a session that never returned to disappear")
    finally:
        stop_kazoo(zk)


@pytest.mark.timeout(120)
def test_container_and_ttl_survive_restart(fresh_server):
    c = rawzk.connect(fresh_server)
    assert c.create_container("/ct").err == 0
    assert c.create("/ct/kid").err == 0
    assert c.create_ttl("/ttl", 2000).err == 0
    c.close()
    fresh_server.proc.restart(hard=True)
    c = rawzk.connect(fresh_server)
    try:
        rep = c.exists("/ct")
        assert rep.err == 0, "container lost across restart (err %d)" % rep.err
        st = rep.value
        assert st.ephemeralOwner == 0 and st.numChildren == 1
        assert c.delete("/ct/kid").err == 0
        wait_until(lambda: c.exists("/ct").err == rawzk.NONODE, timeout=15, interval=0.1,
                   msg="restored container reaped once empty")
        wait_until(lambda: c.exists("/ttl").err == rawzk.NONODE, timeout=15, interval=0.1,
                   msg="restored TTL node expires")
    finally:
        c.close()


@pytest.mark.timeout(120)
def test_sigkill_during_pipelined_writes_keeps_a_prefix(fresh_server):
    """SIGKILL while a session has many writes in flight: after restart every
    acknowledged write is present and the surviving writes form a prefix of
    the session's request order (no holes)."""
    import threading
    for rnd in range(2):
        root = "/crash%d" % rnd
        zk = start_kazoo(fresh_server)
        acked = set()
        lock = threading.Lock()
        try:
            zk.create(root)
            n = 3000

            def cb(i):
                def done(res):
                    try:
                        res.get(timeout=0)
                        with lock:
                            acked.add(i)
                    except Exception:
                        pass
                return done

            for i in range(n):
                zk.create_async("%s/n%05d" % (root, i), b"").rawlink(cb(i))
            wait_until(lambda: len(acked) >= 300, timeout=30, interval=0.005,
                       msg="some writes acknowledged")
            fresh_server.proc.restart(hard=True)
        finally:
            stop_kazoo(zk)
        with lock:
            acked_now = set(acked)
        zk = start_kazoo(fresh_server)
        try:
            present = sorted(int(c[1:]) for c in zk.get_children(root))
            print("round %d: %d acknowledged, %d present after SIGKILL" % (
                rnd, len(acked_now), len(present)))
            missing = sorted(acked_now - set(present))
            assert not missing, "acknowledged writes lost: %r" % missing[:10]
            assert present == list(range(len(present))), \
                "surviving writes are not a prefix (holes at %r)" % (
                    sorted(set(range(len(present))) - set(present))[:10])
        finally:
            stop_kazoo(zk)
