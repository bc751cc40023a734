"""Watches: kazoo one-shot watches, DataWatch/ChildrenWatch, and raw ordering checks."""

import time

import pytest
from kazoo.protocol.states import EventType

import rawzk
from helpers import Collector, wait_until


def ev_tuple(e):
    return (e.type, e.path)


def test_get_watch_is_one_shot(zk, kz, base):
    p = zk.create(base + "/d", b"0")
    got = Collector()
    zk.get(p, watch=got)
    other = kz()
    other.set(p, b"1")
    other.set(p, b"2")
    evs = got.wait_count(1)
    # fence: a later watch set by the same client on another node fires after
    # any (wrong) second event for p would have arrived
    fence = Collector()
    q = zk.create(base + "/fence")
    zk.exists(q, watch=fence)
    other.set(q, b"x")
    fence.wait_count(1)
    assert [ev_tuple(e) for e in got.snapshot()] == [(EventType.CHANGED, p)]
    assert evs[0].state == "CONNECTED"


def test_exists_watch_on_missing_node(zk, kz, base):
    p = base + "/later"
    got = Collector()
    assert zk.exists(p, watch=got) is None
    kz().create(p, b"")
    e = got.wait_count(1)[0]
    assert ev_tuple(e) == (EventType.CREATED, p)


def test_get_on_missing_node_sets_no_watch(raw, zk, base):
    c = raw()
    p = base + "/nothere"
    assert c.get_data(p, watch=True).err == rawzk.NONODE
    assert c.get_children(p, watch=True).err == rawzk.NONODE
    zk.create(p)
    # fence on the same connection
    assert c.exists(base + "/fence", watch=True).err == rawzk.NONODE
    zk.create(base + "/fence")
    ev = c.wait_event(lambda e: e.path == base + "/fence")
    assert ev is not None and ev.type == rawzk.EV_NODE_CREATED
    assert [(e.type, e.path) for e in c.events] == [(rawzk.EV_NODE_CREATED, base + "/fence")]


def test_delete_fires_data_and_child_watches(zk, kz, base):
    p = zk.create(base + "/n")
    zk.create(p + "/c")
    data_ev, child_ev, parent_ev = Collector(), Collector(), Collector()
    zk.get(p + "/c", watch=data_ev)
    zk.get_children(p, watch=child_ev)
    zk.get_children(base, watch=parent_ev)
    other = kz()
    other.delete(p + "/c")
    assert [ev_tuple(e) for e in data_ev.wait_count(1)] == [(EventType.DELETED, p + "/c")]
    assert [ev_tuple(e) for e in child_ev.wait_count(1)] == [(EventType.CHILD, p)]
    zk.get_children(p, watch=child_ev)
    other.delete(p)
    assert [ev_tuple(e) for e in child_ev.wait_count(2)][1] == (EventType.DELETED, p)
    assert [ev_tuple(e) for e in parent_ev.wait_count(1)] == [(EventType.CHILD, base)]


def test_set_acl_and_failed_ops_fire_nothing(raw, zk, base):
    from kazoo.security import OPEN_ACL_UNSAFE
    from kazoo.exceptions import BadVersionError
    p = zk.create(base + "/a", b"")
    c = raw()
    assert c.get_data(p, watch=True).err == 0
    assert c.get_children(p, watch=True).err == 0
    zk.set_acls(p, OPEN_ACL_UNSAFE)
    with pytest.raises(BadVersionError):
        zk.set(p, b"x", version=7)
    zk.sync(p)
    t = zk.transaction()
    t.set_data(p, b"y")
    t.check(p, 99)
    t.commit()
    zk.set(p, b"real")   # the first event this connection may see
    ev = c.wait_event()
    assert (ev.type, ev.path) == (rawzk.EV_NODE_DATA_CHANGED, p)
    assert len(c.events) == 1


def test_children_watch_events(zk, kz, base):
    got = Collector()
    zk.get_children(base, watch=got)
    other = kz()
    other.create(base + "/x")
    assert [ev_tuple(e) for e in got.wait_count(1)] == [(EventType.CHILD, base)]
    # setData on the parent does not fire a child watch
    zk.get_children(base, watch=got)
    other.set(base, b"data")
    other.delete(base + "/x")
    evs = got.wait_count(2)
    assert [ev_tuple(e) for e in evs] == [(EventType.CHILD, base)] * 2


def test_data_watch_recipe(zk, kz, base):
    p = base + "/dw"
    seen = Collector()

    @zk.DataWatch(p)
    def watcher(data, stat, event=None):
        seen((data, None if stat is None else stat.version,
              None if event is None else event.type))

    seen.wait_count(1)
    other = kz()
    other.create(p, b"a")
    seen.wait_for(lambda it: it[0] == b"a")
    other.set(p, b"b")
    seen.wait_for(lambda it: it[0] == b"b")
    other.delete(p)
    seen.wait_for(lambda it: it[2] == EventType.DELETED)
    items = seen.snapshot()
    assert items[0] == (None, None, None)
    assert (b"a", 0, EventType.CREATED) in items
    assert (b"b", 1, EventType.CHANGED) in items
    assert items[-1] == (None, None, EventType.DELETED)


def test_children_watch_recipe(zk, kz, base):
    seen = Collector()

    @zk.ChildrenWatch(base)
    def watcher(children):
        seen(sorted(children))

    seen.wait_count(1)
    other = kz()
    other.create(base + "/a")
    seen.wait_for(lambda c: c == ["a"])
    other.create(base + "/b")
    seen.wait_for(lambda c: c == ["a", "b"])
    other.delete(base + "/a")
    seen.wait_for(lambda c: c == ["b"])
    assert seen.snapshot()[0] == []


def test_multi_fires_in_op_order(raw, zk, base):
    zk.create(base + "/x", b"")
    c = raw()
    assert c.exists(base + "/a", watch=True).err == rawzk.NONODE
    assert c.get_data(base + "/x", watch=True).err == 0
    assert c.get_children(base, watch=True).err == 0
    t = zk.transaction()
    t.set_data(base + "/x", b"1")
    t.create(base + "/a")
    t.commit()
    c.wait_event(lambda e: e.type == rawzk.EV_NODE_CHILDREN_CHANGED)
    c.drain_events(0.2)
    assert [(e.type, e.path) for e in c.events] == [
        (rawzk.EV_NODE_DATA_CHANGED, base + "/x"),
        (rawzk.EV_NODE_CREATED, base + "/a"),
        (rawzk.EV_NODE_CHILDREN_CHANGED, base),
    ]
    assert all(e.state == 3 for e in c.events)


def test_create_event_order_data_then_parent(raw, zk, base):
    c = raw()
    assert c.exists(base + "/n", watch=True).err == rawzk.NONODE
    assert c.get_children(base, watch=True).err == 0
    zk.create(base + "/n")
    c.wait_event(lambda e: e.type == rawzk.EV_NODE_CHILDREN_CHANGED)
    assert [(e.type, e.path) for e in c.events] == [
        (rawzk.EV_NODE_CREATED, base + "/n"), (rawzk.EV_NODE_CHILDREN_CHANGED, base)]


def test_watches_deduplicated_per_connection(raw, zk, base):
    p = zk.create(base + "/d", b"")
    c = raw()
    c.get_data(p, watch=True)
    c.get_data(p, watch=True)
    c.exists(p, watch=True)
    zk.set(p, b"1")
    zk.create(base + "/fence")
    c.exists(base + "/fence2", watch=True)
    zk.create(base + "/fence2")
    c.wait_event(lambda e: e.path == base + "/fence2")
    assert [(e.type, e.path) for e in c.events] == [
        (rawzk.EV_NODE_DATA_CHANGED, p), (rawzk.EV_NODE_CREATED, base + "/fence2")]


def test_own_write_event_before_reply(raw, base, zk):
    p = zk.create(base + "/own", b"0")
    c = raw()
    assert c.get_data(p, watch=True).err == 0
    c.log.clear()
    rep = c.set_data(p, b"1")
    assert rep.err == 0
    kinds = [entry[0] for entry in c.log]
    assert kinds == ["event", "reply"], c.log
    assert c.events[0].type == rawzk.EV_NODE_DATA_CHANGED


def test_event_before_read_that_sees_change(raw, kz, base, zk):
    """A connection must receive the notification before the reply of any later
    read that reflects the change."""
    p = zk.create(base + "/ord", b"old")
    watcher = raw()
    assert watcher.get_data(p, watch=True).err == 0
    writer = kz()
    fut = writer.set_async(p, b"new")
    for _ in range(2000):
        watcher.log.clear()
        rep = watcher.get_data(p)
        assert rep.err == 0
        if rep.value[0] == b"new":
            # frames are read in order: the event must have been read already
            assert watcher.events, "read saw new data before the watch event: %r" % watcher.log
            break
    else:
        pytest.fail("never observed the new data")
    fut.get(timeout=10)
    assert len(watcher.events) == 1
    assert (watcher.events[0].type, watcher.events[0].path) == (rawzk.EV_NODE_DATA_CHANGED, p)


def test_event_before_read_many_rounds(raw, base, zk):
    """Stress version of the ordering rule: another connection writes in a
    loop while this one re-arms a watch and reads; whenever a read returns a
    value newer than the one seen when the watch was armed, the event must
    already have arrived."""
    p = zk.create(base + "/ord2", b"0")
    watcher, writer = raw(), raw()
    for i in range(1, 60):
        rep = watcher.get_data(p, watch=True)
        armed = int(rep.value[0])
        watcher.events.clear()
        writer.send_request(rawzk.OP_SETDATA, rawzk.op_set_data(p, str(i).encode())[1])
        deadline = time.monotonic() + 10
        while True:
            assert time.monotonic() < deadline, "write %d never became visible" % i
            r = watcher.get_data(p)
            if int(r.value[0]) > armed:
                assert watcher.events, "round %d: read saw %s before the event" % (i, r.value[0])
                break
        writer.read_reply(writer.xid)


def test_event_delivered_before_reply_of_write_in_multi(raw, base, zk):
    p = zk.create(base + "/m", b"")
    c = raw()
    c.get_data(p, watch=True)
    c.log.clear()
    rep = c.multi([rawzk.op_set_data(p, b"z")])
    assert rep.err == 0
    assert [entry[0] for entry in c.log] == ["event", "reply"]


def test_watch_survives_nothing_after_connection_close(raw, zk, base):
    """Watches belong to the connection: a watch set on a closed connection
    must not leak to a new connection of another session."""
    p = zk.create(base + "/w", b"")
    c1 = raw()
    c1.get_data(p, watch=True)
    c1.close()
    c2 = raw()
    c2.exists(base + "/f", watch=True)
    zk.set(p, b"x")
    zk.create(base + "/f")
    c2.wait_event(lambda e: e.path == base + "/f")
    assert [(e.type, e.path) for e in c2.events] == [(rawzk.EV_NODE_CREATED, base + "/f")]


def test_set_watches_catch_up(raw, zk, base):
    """SetWatches (101): catch-up events for changes after relativeZxid."""
    pd = zk.create(base + "/d", b"")
    pc = zk.create(base + "/c", b"")
    pgone = zk.create(base + "/gone", b"")
    quiet = zk.create(base + "/quiet")
    c = raw()
    zx = c.exists(base).zxid
    zk.set(pd, b"changed")
    zk.create(pc + "/kid")
    zk.delete(pgone)
    pnew = base + "/new"
    zk.create(pnew)
    c.log.clear()
    rep = c.set_watches(zx, data=[pd, pgone, quiet], exist=[pnew, base + "/nope"], child=[pc])
    assert rep.err == 0
    assert c.log[-1][0] == "reply"
    got = sorted((e.type, e.path) for e in c.events)
    assert got == sorted([
        (rawzk.EV_NODE_DATA_CHANGED, pd),
        (rawzk.EV_NODE_DELETED, pgone),
        (rawzk.EV_NODE_CREATED, pnew),
        (rawzk.EV_NODE_CHILDREN_CHANGED, pc),
    ])
    # the watches that had nothing to catch up are registered
    c.events.clear()
    zk.set(quiet, b"q")
    zk.create(base + "/nope")
    c.wait_event(lambda e: e.path == base + "/nope")
    assert sorted((e.type, e.path) for e in c.events) == sorted([
        (rawzk.EV_NODE_DATA_CHANGED, quiet), (rawzk.EV_NODE_CREATED, base + "/nope")])
