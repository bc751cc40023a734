"""Operations kazoo has no API for, through rawzk: containers, TTL nodes,
addWatch (persistent / recursive), removeWatches / checkWatches,
getAllChildrenNumber, getEphemerals, whoAmI, stand-alone check."""

import pytest

import rawzk
from helpers import wait_until

REAP_TIMEOUT = 15.0   # checkIntervalMs=500: reaping should take ~1 s


def gone(c, path):
    return c.exists(path).err == rawzk.NONODE


# ---------------------------------------------------------------- containers

def test_container_create_and_stat(raw, base):
    c = raw()
    rep = c.create_container(base + "/ct", b"cd")
    assert rep.err == 0
    path, st = rep.value
    assert path == base + "/ct"
    assert st.ephemeralOwner == 0                    # reported as 0
    assert st.czxid == st.mzxid == st.pzxid and st.version == 0
    assert c.get_data(path).value[0] == b"cd"
    assert c.create_container(path).err == rawzk.NODEEXISTS
    assert c.create_container(base + "/missing/ct").err == rawzk.NONODE
    # containers can have children of every kind, including ephemerals
    assert c.create(path + "/p").err == 0
    assert c.create(path + "/e", flags=rawzk.EPHEMERAL).err == 0
    assert c.create_container(path + "/sub").err == 0
    assert sorted(c.get_children(path).value) == ["e", "p", "sub"]


def test_container_reaped_after_last_child_deleted(raw, zk, base):
    c = raw()
    ct = base + "/ct"
    never_used = base + "/never"
    assert c.create_container(ct).err == 0
    assert c.create_container(never_used).err == 0
    assert c.create(ct + "/a").err == 0
    assert c.create(ct + "/b").err == 0
    assert c.delete(ct + "/a").err == 0
    # still has a child: must survive reaper passes; watch it
    assert c.exists(ct, watch=True).err == 0
    assert c.get_children(base, watch=True).err == 0
    assert c.delete(ct + "/b").err == 0
    wait_until(lambda: gone(zk_raw := c, ct), timeout=REAP_TIMEOUT, interval=0.1,
               msg="container reaped after its last child was deleted")
    # reaping is a normal delete: events fire
    ev = c.wait_event(lambda e: e.path == ct and e.type == rawzk.EV_NODE_DELETED, timeout=5)
    assert ev is not None
    ev = c.wait_event(lambda e: e.path == base and e.type == rawzk.EV_NODE_CHILDREN_CHANGED,
                      timeout=5)
    assert ev is not None
    # a container that never had a child is not reaped (the pass that reaped
    # the used one looked at it too)
    assert c.exists(never_used).err == 0
    st = c.exists(base).value
    assert st.numChildren == 1


def test_container_with_ephemeral_child_reaped_after_session_close(raw, zk, base):
    c = raw()
    ct = base + "/ct"
    assert c.create_container(ct).err == 0
    owner = raw()
    assert owner.create(ct + "/eph", flags=rawzk.EPHEMERAL).err == 0
    assert owner.close_session().err == 0
    wait_until(lambda: gone(c, ct), timeout=REAP_TIMEOUT, interval=0.1,
               msg="container reaped after its ephemeral child's session closed")


def test_container_bad_flags(raw, base):
    c = raw()
    for flags in (5, 6, 7):
        assert c.create(base + "/x", flags=flags, opcode=rawzk.OP_CREATECONTAINER).err == \
            rawzk.BADARGUMENTS
    assert c.get_children(base).value == []


# ---------------------------------------------------------------- TTL

def test_ttl_node_expires(raw, base):
    c = raw()
    rep = c.create_ttl(base + "/ttl", 500, b"t")
    assert rep.err == 0
    path, st = rep.value
    assert st.ephemeralOwner == 0
    assert c.get_data(path).value[0] == b"t"
    wait_until(lambda: gone(c, path), timeout=REAP_TIMEOUT, interval=0.1,
               msg="TTL node to expire")


def test_ttl_sequential(raw, base):
    c = raw()
    rep = c.create_ttl(base + "/s-", 60000, flags=rawzk.PERSISTENT_SEQUENTIAL_WITH_TTL)
    assert rep.err == 0
    assert rep.value[0] == base + "/s-0000000000"


def test_ttl_node_with_children_kept_until_empty(raw, base):
    c = raw()
    parent = base + "/tp"
    marker = base + "/marker"
    assert c.create_ttl(parent, 300).err == 0
    assert c.create(parent + "/kid").err == 0
    assert c.create_ttl(marker, 300).err == 0
    wait_until(lambda: gone(c, marker), timeout=REAP_TIMEOUT, interval=0.1,
               msg="childless TTL marker node to expire")
    assert c.exists(parent).err == 0, "TTL node with a child must not be reaped"
    assert c.delete(parent + "/kid").err == 0
    wait_until(lambda: gone(c, parent), timeout=REAP_TIMEOUT, interval=0.1,
               msg="TTL node to expire once childless")


@pytest.mark.timeout(60)
def test_ttl_extended_by_set_data(raw, base):
    import time
    c = raw()
    p = base + "/touched"
    assert c.create_ttl(p, 2000).err == 0
    deadline = time.monotonic() + 4.0    # twice the ttl
    while time.monotonic() < deadline:
        assert c.set_data(p, b"x").err == 0, "TTL node reaped although it was modified"
        time.sleep(0.25)
    wait_until(lambda: gone(c, p), timeout=REAP_TIMEOUT, interval=0.1,
               msg="TTL node to expire after the last setData")


@pytest.mark.parametrize("ttl,flags,opcode", [
    (0, rawzk.PERSISTENT_WITH_TTL, rawzk.OP_CREATETTL),
    (-5, rawzk.PERSISTENT_WITH_TTL, rawzk.OP_CREATETTL),
    (0xFFFFFFFFFF + 1, rawzk.PERSISTENT_WITH_TTL, rawzk.OP_CREATETTL),
    (1000, rawzk.PERSISTENT, rawzk.OP_CREATETTL),         # non-TTL flag with a ttl
    (1000, rawzk.EPHEMERAL, rawzk.OP_CREATETTL),
    (None, rawzk.PERSISTENT_WITH_TTL, rawzk.OP_CREATE),   # TTL flag without op 21
    (None, rawzk.PERSISTENT_WITH_TTL, rawzk.OP_CREATE2),
    (None, rawzk.PERSISTENT_SEQUENTIAL_WITH_TTL, rawzk.OP_CREATE2),
    (None, 7, rawzk.OP_CREATE),
    (None, -1, rawzk.OP_CREATE2),
])
def test_ttl_bad_arguments(raw, base, ttl, flags, opcode):
    c = raw()
    rep = c.create(base + "/bad", flags=flags, opcode=opcode, ttl=ttl)
    assert rep.err == rawzk.BADARGUMENTS
    assert c.get_children(base).value == []


def test_ttl_max_value_accepted(raw, base):
    c = raw()
    assert c.create_ttl(base + "/max", 0xFFFFFFFFFF).err == 0


# ---------------------------------------------------------------- addWatch

def test_add_watch_persistent(raw, zk, base):
    c = raw()
    p = base + "/pw"
    rep = c.add_watch(p, rawzk.AW_PERSISTENT)   # node need not exist
    assert rep.err == 0 and rep.value == 0       # 4-byte ErrorResponse{0} body
    zk.create(p, b"")
    zk.set(p, b"1")
    zk.set(p, b"2")
    zk.create(p + "/kid")
    zk.set(p + "/kid", b"x")   # not reported: not recursive
    zk.delete(p + "/kid")
    zk.delete(p)
    zk.create(p)
    c.wait_event(lambda e: e.type == rawzk.EV_NODE_CREATED and len(
        [x for x in c.events if x.type == rawzk.EV_NODE_CREATED]) == 2)
    c.drain_events(0.2)
    assert [(e.type, e.path) for e in c.events] == [
        (rawzk.EV_NODE_CREATED, p),
        (rawzk.EV_NODE_DATA_CHANGED, p),
        (rawzk.EV_NODE_DATA_CHANGED, p),
        (rawzk.EV_NODE_CHILDREN_CHANGED, p),
        (rawzk.EV_NODE_CHILDREN_CHANGED, p),
        (rawzk.EV_NODE_DELETED, p),
        (rawzk.EV_NODE_CREATED, p),
    ]


def test_add_watch_recursive(raw, zk, base):
    c = raw()
    r = base + "/rec"
    zk.create(r)
    assert c.add_watch(r, rawzk.AW_PERSISTENT_RECURSIVE).err == 0
    zk.create(r + "/a")
    zk.create(r + "/a/b", b"")
    zk.set(r + "/a/b", b"1")
    zk.set(r, b"r")
    zk.delete(r + "/a/b")
    zk.create(base + "/outside")   # not under r
    zk.delete(r + "/a")
    c.wait_event(lambda e: e.type == rawzk.EV_NODE_DELETED and e.path == r + "/a")
    c.drain_events(0.2)
    assert [(e.type, e.path) for e in c.events] == [
        (rawzk.EV_NODE_CREATED, r + "/a"),
        (rawzk.EV_NODE_CREATED, r + "/a/b"),
        (rawzk.EV_NODE_DATA_CHANGED, r + "/a/b"),
        (rawzk.EV_NODE_DATA_CHANGED, r),
        (rawzk.EV_NODE_DELETED, r + "/a/b"),
        (rawzk.EV_NODE_DELETED, r + "/a"),
    ]   # never NodeChildrenChanged


def test_add_watch_bad_mode(raw, base):
    c = raw()
    assert c.add_watch(base, 2).err == rawzk.MARSHALLINGERROR
    assert c.add_watch(base, -1).err == rawzk.MARSHALLINGERROR
    assert c.ping().err == 0


def test_persistent_watch_plus_one_shot_same_path(raw, zk, server, base):
    """One event per connection per trigger even with several matching watches;
    the one-shot is consumed, the persistent one stays (doc §7.4)."""
    if server.kind == "zk":
        pytest.skip("ZooKeeper 3.8.0 bug (ZOOKEEPER-4466, fixed in 3.9): a standard watch "
                    "replaces the persistent mode on the same path, so it stops after one event")
    c = raw()
    p = zk.create(base + "/both", b"")
    assert c.add_watch(p, rawzk.AW_PERSISTENT).err == 0
    assert c.get_data(p, watch=True).err == 0
    zk.set(p, b"1")
    zk.set(p, b"2")
    c.wait_event(lambda e: len(c.events) >= 2)
    c.drain_events(0.2)
    assert [(e.type, e.path) for e in c.events] == [(rawzk.EV_NODE_DATA_CHANGED, p)] * 2


# ---------------------------------------------------------------- removeWatches / checkWatches

def _fence(c, zk, path):
    """Make sure every event caused by earlier writes has been read: arm an
    exists watch on a fresh path, create it, wait for that event."""
    assert c.exists(path, watch=True).err == rawzk.NONODE
    zk.create(path)
    ev = c.wait_event(lambda e: e.path == path)
    assert ev is not None, "fence event never arrived"


def test_remove_watches(raw, zk, base):
    c = raw()
    p = zk.create(base + "/rw", b"")
    assert c.remove_watches(p, rawzk.WT_ANY).err == rawzk.NOWATCHER
    assert c.get_data(p, watch=True).err == 0
    assert c.get_children(p, watch=True).err == 0
    assert c.check_watches(p, rawzk.WT_DATA).err == 0
    assert c.check_watches(p, rawzk.WT_CHILDREN).err == 0
    assert c.remove_watches(p, rawzk.WT_DATA).err == 0
    assert c.check_watches(p, rawzk.WT_DATA).err == rawzk.NOWATCHER
    assert c.remove_watches(p, rawzk.WT_DATA).err == rawzk.NOWATCHER
    zk.set(p, b"x")                 # no event any more
    zk.create(p + "/k")             # child watch still there
    _fence(c, zk, base + "/fence1")
    assert [(e.type, e.path) for e in c.events] == [
        (rawzk.EV_NODE_CHILDREN_CHANGED, p), (rawzk.EV_NODE_CREATED, base + "/fence1")]
    c.events.clear()
    # Any removes a persistent watch whole
    assert c.add_watch(p, rawzk.AW_PERSISTENT).err == 0
    assert c.remove_watches(p, rawzk.WT_ANY).err == 0
    assert c.check_watches(p, rawzk.WT_ANY).err == rawzk.NOWATCHER
    zk.set(p, b"y")
    zk.delete(p + "/k")
    _fence(c, zk, base + "/fence2")
    assert [(e.type, e.path) for e in c.events] == [(rawzk.EV_NODE_CREATED, base + "/fence2")]


def test_remove_exists_watch_on_missing_node(raw, zk, base):
    c = raw()
    p = base + "/notyet"
    assert c.exists(p, watch=True).err == rawzk.NONODE
    assert c.check_watches(p, rawzk.WT_DATA).err == 0
    assert c.remove_watches(p, rawzk.WT_DATA).err == 0
    zk.create(p)
    _fence(c, zk, base + "/fence")
    assert [e.path for e in c.events] == [base + "/fence"]


def test_remove_watches_bad_type(raw, base):
    c = raw()
    assert c.remove_watches(base, 42).err == rawzk.MARSHALLINGERROR
    assert c.check_watches(base, 0).err == rawzk.MARSHALLINGERROR
    assert c.ping().err == 0


# ---------------------------------------------------------------- counters / listings

def test_get_all_children_number(raw, zk, base):
    c = raw()
    zk.create(base + "/a/b/c", makepath=True)
    zk.create(base + "/a/d")
    zk.create(base + "/e")
    rep = c.get_all_children_number(base)
    assert rep.err == 0 and rep.value == 5
    assert c.get_all_children_number(base + "/e").value == 0
    assert c.get_all_children_number(base + "/missing").err == rawzk.NONODE
    assert c.get_all_children_number("/zookeeper").value == 2


def test_get_all_children_number_needs_read(raw, zk, base):
    from kazoo.security import make_digest_acl
    p = zk.create(base + "/locked", b"", acl=[make_digest_acl("u", "p", all=True)])
    c = raw()
    assert c.get_all_children_number(p).err == rawzk.NOAUTH


def test_get_ephemerals(raw, zk, base):
    c = raw()
    other = raw()
    zk.create(base + "/dir/sub", makepath=True)
    for p in (base + "/e1", base + "/dir/e2", base + "/dir/sub/e3"):
        assert c.create(p, flags=rawzk.EPHEMERAL).err == 0
    assert other.create(base + "/other", flags=rawzk.EPHEMERAL).err == 0
    rep = c.get_ephemerals(base)
    assert rep.err == 0
    assert sorted(rep.value) == sorted([base + "/e1", base + "/dir/e2", base + "/dir/sub/e3"])
    assert sorted(c.get_ephemerals(base + "/dir").value) == sorted(
        [base + "/dir/e2", base + "/dir/sub/e3"])
    assert sorted(c.get_ephemerals("/").value) == sorted(
        [base + "/e1", base + "/dir/e2", base + "/dir/sub/e3"])
    assert c.get_ephemerals(base + "/nothing-here").value == []
    assert other.get_ephemerals(base).value == [base + "/other"]
    fresh = raw()
    assert fresh.get_ephemerals("/").value == []


def test_whoami(raw):
    c = raw()
    rep = c.whoami()
    assert rep.err == 0
    assert rep.value == [("ip", "127.0.0.1")]
    assert c.auth("digest", b"henry:pw").err == 0
    assert sorted(c.whoami().value) == [("digest", "henry"), ("ip", "127.0.0.1")]
    su = raw()
    assert su.auth("digest", b"super:test").err == 0
    assert ("super", "") in su.whoami().value


# ---------------------------------------------------------------- stand-alone check

def test_standalone_check_missing_node(raw, base):
    """Stand-alone check (13) is only meant for multi.  3.8.0 answers NoNode for
    a missing node; later sources answer Unimplemented and close."""
    c = raw()
    rep = c.check(base + "/missing", 0, timeout=5)
    assert rep.err in (rawzk.NONODE, rawzk.UNIMPLEMENTED)


def test_standalone_check_existing_node_never_hangs(raw, server, base):
    if server.kind == "zk":
        pytest.skip("known ZooKeeper 3.8.0 bug: stand-alone check on an existing node "
                    "never answers")
    c = raw()
    xid = c.send_request(rawzk.OP_CHECK, rawzk.op_check(base, 0)[1])
    try:
        rep = c.read_reply(xid, timeout=5)
        # later releases: Unimplemented, then close; any clean error is acceptable
        assert rep.err != 0, "stand-alone check must not succeed"
    except rawzk.ConnectionClosed:
        pass
    # the server is fine afterwards
    c2 = raw()
    assert c2.exists(base).err == 0


def test_delete_container_opcode_from_client(raw, base):
    """deleteContainer (20) is internal; accepting or rejecting it is both OK,
    but it must not break the server or delete a non-empty node."""
    c = raw()
    ct = base + "/ct"
    assert c.create_container(ct).err == 0
    assert c.create(ct + "/kid").err == 0
    xid = c.send_request(rawzk.OP_DELETECONTAINER, rawzk.W().ustring(ct).bytes())
    try:
        c.read_reply(xid, timeout=5)
    except (rawzk.ConnectionClosed, OSError):
        pass
    c2 = raw()
    assert c2.exists(ct + "/kid").err == 0


# ---------------------------------------------------------------- 3.8.0 bugs: later semantics

def test_remove_watches_persistent_types(raw, zk, server, base):
    """removeWatches type Persistent (4) / PersistentRecursive (5) remove that
    mode (doc §7.7).  ZooKeeper 3.8.0 answers MarshallingError (a bug)."""
    if server.kind == "zk":
        pytest.skip("ZooKeeper 3.8.0 bug: removeWatches with type 4/5 -> MarshallingError")
    c = raw()
    p, r = base + "/p", base + "/r"
    assert c.add_watch(p, rawzk.AW_PERSISTENT).err == 0
    assert c.add_watch(r, rawzk.AW_PERSISTENT_RECURSIVE).err == 0
    assert c.check_watches(p, 4).err == 0
    assert c.check_watches(r, 5).err == 0
    assert c.check_watches(p, 5).err == rawzk.NOWATCHER
    assert c.remove_watches(p, 4).err == 0
    assert c.remove_watches(r, 5).err == 0
    assert c.remove_watches(p, 4).err == rawzk.NOWATCHER
    assert c.check_watches(r, rawzk.WT_ANY).err == rawzk.NOWATCHER
    zk.create(p)
    zk.create(r)
    zk.create(r + "/x")
    _fence(c, zk, base + "/fence")
    assert [e.path for e in c.events] == [base + "/fence"]


def test_check_watches_is_per_connection(raw, zk, server, base):
    """checkWatches only looks at the calling connection's watches.  3.8.0
    answers OK if any connection watches the path (a bug)."""
    if server.kind == "zk":
        pytest.skip("ZooKeeper 3.8.0 bug: checkWatches matches other connections' watches")
    p = zk.create(base + "/w")
    a, b = raw(), raw()
    assert a.get_data(p, watch=True).err == 0
    assert a.check_watches(p, rawzk.WT_DATA).err == 0
    assert b.check_watches(p, rawzk.WT_DATA).err == rawzk.NOWATCHER
    assert b.remove_watches(p, rawzk.WT_ANY).err == rawzk.NOWATCHER
    assert a.check_watches(p, rawzk.WT_DATA).err == 0
