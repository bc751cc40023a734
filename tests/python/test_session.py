"""Sessions: handshake details, reattach, expiry, close."""

import socket
import struct
import threading
import time

import pytest
from kazoo.protocol.states import KazooState

import rawzk
from conftest import start_kazoo, stop_kazoo
from helpers import Collector, TcpProxy, wait_until

MIN_TIMEOUT_MS = 4000    # 2 x tickTime(2000)
MAX_TIMEOUT_MS = 40000   # 20 x tickTime


def test_connect_response_shape(server):
    c = rawzk.RawZK(server)
    try:
        c.connect(timeout_ms=10000)
        assert c.connect_proto == 0
        assert c.negotiated_timeout == 10000
        assert c.session_id != 0
        assert len(c.passwd) == 16
        assert c.connect_read_only is False
    finally:
        c.close()


def test_connect_without_readonly_byte(server):
    """An old (<=3.3) client sends no readOnly byte and gets a 36-byte reply."""
    s = socket.create_connection(rawzk.parse_hostport(server), timeout=10)
    try:
        body = rawzk.W().int(0).long(0).int(10000).long(0).buffer(b"\0" * 16).bytes()
        s.sendall(struct.pack(">i", len(body)) + body)
        r = rawzk.RawZK.__new__(rawzk.RawZK)
        r.sock, r._buf, r.timeout = s, b"", 10
        frame = r.recv_frame()
        assert len(frame) == 36
        rd = rawzk.R(frame)
        assert rd.int() == 0 and rd.int() == 10000
        assert rd.long() != 0
        assert len(rd.buffer()) == 16
    finally:
        s.close()


@pytest.mark.parametrize("requested,expected", [
    (1, MIN_TIMEOUT_MS), (3999, MIN_TIMEOUT_MS), (6000, 6000),
    (MAX_TIMEOUT_MS, MAX_TIMEOUT_MS), (10 ** 6, MAX_TIMEOUT_MS)])
def test_timeout_negotiation(raw, requested, expected):
    c = raw(timeout_ms=requested)
    assert c.negotiated_timeout == expected


def test_ping(raw):
    c = raw()
    rep = c.ping()
    assert rep.xid == -2 and rep.err == 0
    # pings keep working and zxid is sane
    rep2 = c.ping()
    assert rep2.zxid >= rep.zxid >= 0


def test_reply_zxid_tracks_writes(raw, base):
    c = raw()
    r1 = c.create(base + "/a")
    st = c.exists(base + "/a").value
    assert r1.zxid == st.czxid
    r2 = c.set_data(base + "/a", b"x")
    assert r2.zxid == r2.value.mzxid > r1.zxid
    r3 = c.get_data(base + "/a")
    assert r3.zxid >= r2.zxid


def test_xids_echoed_exactly(raw, base):
    c = raw()
    for xid in (7, 1000, 2 ** 31 - 1, 123456789, -5):
        rep = c.request(rawzk.OP_EXISTS, rawzk.W().ustring(base).bool(False).bytes(), xid=xid)
        assert rep.xid == xid and rep.err == 0


def test_pipelined_requests_answered_in_order(raw, base):
    c = raw()
    xids = []
    for i in range(50):
        xids.append(c.send_request(rawzk.OP_CREATE, rawzk.op_create("%s/n%02d" % (base, i))[1]))
        xids.append(c.send_request(rawzk.OP_GETCHILDREN, rawzk.W().ustring(base).bool(False).bytes()))
    for i, x in enumerate(xids):
        rep = c.read_reply(x)     # raises on out-of-order xid
        assert rep.err == 0
        if i % 2 == 1:            # read after its own write sees it
            n = len(rawzk.R(rep.raw).strings())
            assert n == i // 2 + 1


def test_close_session(raw, zk, base):
    c = raw()
    assert c.create(base + "/e", flags=rawzk.EPHEMERAL).err == 0
    rep = c.close_session()
    assert rep.err == 0 and rep.raw == b""
    assert c.wait_closed(timeout=5)
    assert zk.exists(base + "/e") is None


def test_session_reattach(raw, zk, base):
    c = raw(timeout_ms=10000)
    sid, pw = c.session_id, c.passwd
    assert c.create(base + "/e", flags=rawzk.EPHEMERAL).err == 0
    c.close()   # drop the TCP connection, not the session
    assert zk.exists(base + "/e") is not None
    c2 = raw(timeout_ms=10000, session_id=sid, passwd=pw)
    assert c2.session_id == sid and c2.passwd == pw
    assert c2.negotiated_timeout == 10000
    st = c2.exists(base + "/e").value
    assert st.ephemeralOwner == sid
    # the ephemeral still belongs to the session: close it now
    assert c2.close_session().err == 0
    wait_until(lambda: zk.exists(base + "/e") is None, timeout=5, msg="ephemeral removed")


def test_reattach_closes_previous_connection(raw):
    c = raw(timeout_ms=10000)
    c2 = raw(timeout_ms=10000, session_id=c.session_id, passwd=c.passwd)
    assert c2.session_id == c.session_id
    assert c.wait_closed(timeout=5)
    assert c2.ping().err == 0


def _assert_invalid_session_reply(c):
    assert c.negotiated_timeout == 0
    assert c.session_id == 0
    assert c.passwd == b"\0" * 16
    assert c.wait_closed(timeout=5)


def test_reattach_wrong_password(raw):
    c = raw(timeout_ms=10000)
    bad = bytes((b ^ 0xFF) for b in c.passwd)
    c2 = raw(timeout_ms=10000, session_id=c.session_id, passwd=bad)
    _assert_invalid_session_reply(c2)
    # the real server closes the owner's connection before checking the
    # password (doc §2.3 rule 7), but the session itself stays valid
    c3 = raw(timeout_ms=10000, session_id=c.session_id, passwd=c.passwd)
    assert c3.session_id == c.session_id
    assert c3.ping().err == 0


def test_reattach_unknown_session(raw):
    c = raw(timeout_ms=10000, session_id=0x0123456789ABCDEF, passwd=b"\x01" * 16)
    _assert_invalid_session_reply(c)


def test_refuse_client_with_future_zxid(server, raw):
    c = raw(connect=False)
    w = rawzk.W().int(0).long(1 << 60).int(10000).long(0).buffer(b"\0" * 16).bool(False)
    c.send_frame(w.bytes())
    with pytest.raises((rawzk.ConnectionClosed, ConnectionResetError)):
        c.recv_frame(timeout=5)
    c2 = raw()
    assert c2.ping().err == 0


def test_request_after_close_session(raw, base):
    c = raw()
    sid, pw = c.session_id, c.passwd
    assert c.close_session().err == 0
    c2 = raw(session_id=sid, passwd=pw)
    _assert_invalid_session_reply(c2)


@pytest.mark.timeout(60)
def test_session_expiry_removes_ephemerals(raw, zk, base):
    owner = raw(timeout_ms=MIN_TIMEOUT_MS)
    assert owner.negotiated_timeout == MIN_TIMEOUT_MS
    sid, pw = owner.session_id, owner.passwd
    p = base + "/eph"
    assert owner.create(p, b"x", flags=rawzk.EPHEMERAL).err == 0
    assert owner.create(base + "/eph-seq-", flags=rawzk.EPHEMERAL_SEQUENTIAL).err == 0
    events = Collector()
    assert zk.exists(p, watch=events) is not None
    children_events = Collector()
    zk.get_children(base, watch=children_events)
    closed_at = time.monotonic()
    owner.close()   # no closeSession: the session must time out
    # it must not vanish right away (the session is still valid for >= 4 s)
    time.sleep(1.0)
    assert zk.exists(p) is not None, "ephemeral removed before the session timeout"
    wait_until(lambda: zk.get_children(base) == [], timeout=20, interval=0.1,
               msg="ephemerals of the expired session to disappear")
    elapsed = time.monotonic() - closed_at
    assert elapsed >= (MIN_TIMEOUT_MS / 1000.0) * 0.9, "expired too early (%.2fs)" % elapsed
    ev = events.wait_count(1)[0]
    assert ev.type == "DELETED" and ev.path == p
    assert children_events.wait_count(1)[0].type == "CHILD"
    # the expired session cannot be resumed
    late = raw(session_id=sid, passwd=pw)
    _assert_invalid_session_reply(late)


@pytest.mark.timeout(90)
def test_kazoo_session_expiry_through_proxy(server, zk, base):
    """A kazoo client with a short session whose connection is cut: its
    ephemerals disappear for another client, and when it can reach the server
    again it is told the session expired (LOST) and starts a new one."""
    proxy = TcpProxy(server)
    states = Collector()
    client = None
    try:
        client = start_kazoo(proxy.addr, timeout=4.0,
                             connection_retry=dict(max_tries=-1, delay=0.1, backoff=1.5,
                                                   max_delay=0.5))
        client.add_listener(states)
        old_sid = client.client_id[0]
        p = client.create(base + "/k-eph", ephemeral=True)
        assert zk.exists(p).ephemeralOwner == old_sid
        proxy.block()
        states.wait_for(lambda s: s == KazooState.SUSPENDED, timeout=10)
        wait_until(lambda: zk.exists(p) is None, timeout=20, interval=0.1,
                   msg="ephemeral of the cut-off session to disappear")
        proxy.unblock()
        states.wait_for(lambda s: s == KazooState.LOST, timeout=20)
        wait_until(lambda: client.connected and client.client_id
                   and client.client_id[0] != old_sid, timeout=20, msg="new session")
        assert client.exists(p) is None
        client.create(p, ephemeral=True)
        assert zk.exists(p).ephemeralOwner == client.client_id[0]
    finally:
        if client is not None:
            stop_kazoo(client)
        proxy.close()


def test_ephemerals_of_closed_kazoo_client_vanish_and_fire(zk, kz, base):
    other = kz()
    p = other.create(base + "/e", ephemeral=True)
    got = Collector()
    zk.exists(p, watch=got)
    other.stop()
    assert got.wait_count(1)[0].type == "DELETED"


@pytest.mark.timeout(60)
def test_idle_connection_session_expires_and_is_closed(raw, zk, base):
    """A client that stays connected but sends nothing (no pings) loses its
    session after the timeout; the server deletes its ephemerals and closes
    the still-attached connection."""
    c = raw(timeout_ms=MIN_TIMEOUT_MS)
    assert c.create(base + "/idle", flags=rawzk.EPHEMERAL).err == 0
    t0 = time.monotonic()
    assert c.wait_closed(timeout=20), "server never closed the idle, expired connection"
    elapsed = time.monotonic() - t0
    assert elapsed >= MIN_TIMEOUT_MS / 1000.0 * 0.9, "closed too early (%.2fs)" % elapsed
    wait_until(lambda: zk.exists(base + "/idle") is None, timeout=10,
               msg="ephemeral of the expired idle session removed")


def test_pings_keep_session_alive(raw, zk, base):
    c = raw(timeout_ms=MIN_TIMEOUT_MS)
    assert c.create(base + "/alive", flags=rawzk.EPHEMERAL).err == 0
    deadline = time.monotonic() + MIN_TIMEOUT_MS / 1000.0 + 2.5   # > timeout + tickTime
    while time.monotonic() < deadline:
        assert c.ping().err == 0
        time.sleep(0.5)
    assert zk.exists(base + "/alive") is not None
