"""Hostile / malformed input on the client port.  After every case a separate
kazoo client must still work and data stored before must be intact."""

import os
import random
import socket
import struct
import time

import pytest

import rawzk
from conftest import start_kazoo, stop_kazoo

SOCK_TIMEOUT = 5.0


@pytest.fixture
def healthy(server, zk, base):
    """Stores data before the test; check() verifies with a *new* kazoo
    client that the server still serves and the data is intact."""
    payload = os.urandom(64)
    zk.create(base + "/sentinel", payload)
    zk.create(base + "/sentinel/child", b"c")

    def check():
        c = start_kazoo(server, start_timeout=10)
        try:
            data, st = c.get(base + "/sentinel")
            assert data == payload, "stored data changed"
            assert st.numChildren == 1 and st.version == 0
            assert c.get_children(base + "/sentinel") == ["child"]
            p = c.create(base + "/probe-", b"ok", sequence=True)
            assert c.get(p)[0] == b"ok"
            c.delete(p)
        finally:
            stop_kazoo(c)

    yield check
    check()


def fresh_sock(server):
    s = socket.create_connection(rawzk.parse_hostport(server), timeout=SOCK_TIMEOUT)
    s.settimeout(SOCK_TIMEOUT)
    return s


def closed_by_server(s, timeout=SOCK_TIMEOUT):
    """True if the server closes the socket (reads whatever it sends first)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            b = s.recv(65536)
            if not b:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def raw_conn(server):
    r = rawzk.RawZK(server, timeout=SOCK_TIMEOUT)
    r.connect(timeout_ms=10000)
    return r


def outcome(c, xid):
    """('reply', err, still_open) or ('closed',)."""
    try:
        r = c.read_reply(xid, timeout=SOCK_TIMEOUT)
    except rawzk.ConnectionClosed:
        return ("closed",)
    open_ = not c.wait_closed(0.3)
    return ("reply", r.err, open_)


# ------------------------------------------------------------------ before the handshake

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_garbage_first(server, healthy, seed):
    rnd = random.Random(seed)
    s = fresh_sock(server)
    try:
        # first int must not be a valid small length or a 4-letter word
        s.sendall(b"\xde\xad\xbe\xef" + rnd.randbytes(4096))
        assert closed_by_server(s), "server kept a garbage connection open"
    finally:
        s.close()
    healthy()


def test_garbage_after_plausible_length(server, healthy):
    s = fresh_sock(server)
    try:
        s.sendall(struct.pack(">i", 45) + b"\xff" * 45)   # a 45-byte 'ConnectRequest' of junk
        closed_by_server(s, timeout=3)   # either closes or answers; must not crash
    finally:
        s.close()
    healthy()


def test_huge_length_prefix_first_frame(server, healthy):
    s = fresh_sock(server)
    try:
        s.sendall(struct.pack(">i", 0x7FFFFFF0))
        assert closed_by_server(s), "a 2 GiB length prefix must close the connection"
    finally:
        s.close()
    healthy()


@pytest.mark.parametrize("length", [-1, -1000, 0])
def test_bad_length_first_frame(server, healthy, length):
    s = fresh_sock(server)
    try:
        s.sendall(struct.pack(">i", length))
        assert closed_by_server(s)
    finally:
        s.close()
    healthy()


def test_truncated_first_frame_then_disconnect(server, healthy):
    for cut in (1, 3, 20, 44):
        s = fresh_sock(server)
        body = rawzk.W().int(0).long(0).int(10000).long(0).buffer(b"\0" * 16).bool(False).bytes()
        frame = struct.pack(">i", len(body)) + body
        s.sendall(frame[:cut])
        s.close()
    healthy()


def test_truncated_frame_waits_then_completes(server, healthy, base):
    """A frame split over many writes (byte by byte) is reassembled."""
    s = fresh_sock(server)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    r = rawzk.RawZK.__new__(rawzk.RawZK)
    r.__dict__.update(sock=s, _buf=b"", timeout=SOCK_TIMEOUT, xid=0, events=[], log=[],
                      closed=False)
    try:
        body = rawzk.W().int(0).long(0).int(10000).long(0).buffer(b"\0" * 16).bool(False).bytes()
        frame = struct.pack(">i", len(body)) + body
        for i in range(len(frame)):
            s.sendall(frame[i:i + 1])
            if i % 8 == 0:
                time.sleep(0.005)
        rd = rawzk.R(r.recv_frame())
        assert rd.int() == 0 and rd.int() == 10000
        req = struct.pack(">ii", 1, rawzk.OP_GETDATA) + \
            rawzk.W().ustring(base + "/sentinel/child").bool(False).bytes()
        req = struct.pack(">i", len(req)) + req
        for i in range(len(req)):
            s.sendall(req[i:i + 1])
        rep = r.read_reply(1)
        assert rep.err == 0
        assert rawzk.R(rep.raw).buffer() == b"c"
    finally:
        s.close()
    healthy()


def test_many_frames_in_one_write(server, healthy, base):
    c = raw_conn(server)
    try:
        blob = b""
        for i in range(1, 201):
            body = struct.pack(">ii", i, rawzk.OP_EXISTS) + \
                rawzk.W().ustring(base + "/sentinel").bool(False).bytes()
            blob += struct.pack(">i", len(body)) + body
        c.send_raw(blob)
        for i in range(1, 201):
            assert c.read_reply(i).err == 0
    finally:
        c.close()
    healthy()


def test_unknown_four_letter_word(server, healthy):
    s = fresh_sock(server)
    try:
        s.sendall(b"zzzz")
        assert closed_by_server(s)
    finally:
        s.close()
    healthy()


@pytest.mark.parametrize("case", ["short", "passwd-too-long", "passwd-negative", "timeout-huge-len"])
def test_malformed_connect_request(server, healthy, case):
    body = {
        "short": b"\x00" * 10,
        "passwd-too-long": rawzk.W().int(0).long(0).int(10000).long(0).int(1000).bytes(),
        "passwd-negative": rawzk.W().int(0).long(0).int(10000).long(0).int(-7).bytes(),
        "timeout-huge-len": rawzk.W().int(0).long(0).int(10000).long(0).int(0x7FFFFFFF).bytes(),
    }[case]
    s = fresh_sock(server)
    try:
        s.sendall(struct.pack(">i", len(body)) + body)
        assert closed_by_server(s), "malformed ConnectRequest must close the connection"
    finally:
        s.close()
    healthy()


def test_connect_without_passwd_is_accepted(server, healthy):
    """The Rust client sends an empty passwd (length 0) and no readOnly byte
    variants exist: the server must accept both."""
    for pw in (b"", None):
        c = rawzk.RawZK(server, timeout=SOCK_TIMEOUT)
        try:
            c.connect(timeout_ms=10000, passwd=pw, read_only=None)
            assert c.session_id != 0 and len(c.passwd) == 16
            assert c.connect_read_only is None
            assert c.ping().err == 0
        finally:
            c.close()
    healthy()


def test_negative_session_timeout_clamped(server, healthy):
    c = rawzk.RawZK(server, timeout=SOCK_TIMEOUT)
    try:
        c.connect(timeout_ms=-5)
        assert c.negotiated_timeout == 4000
        assert c.session_id != 0
    finally:
        c.close()
    healthy()


# ------------------------------------------------------------------ inside a session

@pytest.mark.parametrize("length", [0x7FFFFFF0, 0x100000 + 1, -1, -99])
def test_bad_length_in_session(server, healthy, length):
    c = raw_conn(server)
    try:
        c.send_raw(struct.pack(">i", length))
        assert c.wait_closed(SOCK_TIMEOUT), "bad frame length %d must close the connection" % length
    finally:
        c.close()
    healthy()


def test_oversized_set_data(server, healthy, base):
    c = raw_conn(server)
    try:
        body = struct.pack(">ii", 1, rawzk.OP_SETDATA) + rawzk.W().ustring(
            base + "/sentinel").buffer(b"x" * (2 * 1024 * 1024)).int(-1).bytes()
        try:
            c.send_frame(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert c.wait_closed(SOCK_TIMEOUT), "an oversized request must close the connection"
    finally:
        c.close()
    healthy()   # checks that /sentinel still has its old data and version 0


def test_oversized_set_data_kazoo(server, healthy, base, kz):
    from kazoo.exceptions import ConnectionLoss, KazooException
    c = kz()
    with pytest.raises((ConnectionLoss, KazooException)):
        c.set(base + "/sentinel", b"y" * (2 * 1024 * 1024))
    healthy()


def test_request_body_just_under_limit(server, healthy, base, zk):
    """1 000 000 bytes of data fit in one frame (limit 1 048 575)."""
    c = raw_conn(server)
    try:
        data = random.Random(5).randbytes(1000 * 1000)
        rep = c.create(base + "/big", data)
        assert rep.err == 0
        assert zk.get(base + "/big")[0] == data
    finally:
        c.close()
    healthy()


@pytest.mark.parametrize("op", [999, 50, 0, -3, 10, 23, 1000, -11000])
def test_unknown_opcode(server, healthy, op):
    c = raw_conn(server)
    try:
        xid = c.send_request(op, b"")
        res = outcome(c, xid)
        assert res[:2] == ("reply", rawzk.UNIMPLEMENTED), res
        assert res[2] is False, "connection must be closed after Unimplemented"
    finally:
        c.close()
    healthy()


def test_second_connect_request_in_session(server, healthy):
    """A ConnectRequest sent again inside a session parses as xid 0 / op 0
    (notification), an unknown opcode: Unimplemented, then close."""
    c = raw_conn(server)
    try:
        c.send_frame(rawzk.W().int(0).long(0).int(30000).long(0).buffer(b"\0" * 16)
                     .bool(False).bytes())
        res = outcome(c, 0)
        assert res[0] == "closed" or (res[1] == rawzk.UNIMPLEMENTED and res[2] is False), res
    finally:
        c.close()
    healthy()


def test_four_letter_word_inside_session(server, healthy):
    c = raw_conn(server)
    try:
        c.send_raw(b"ruok")
        assert c.wait_closed(SOCK_TIMEOUT)
    finally:
        c.close()
    healthy()


@pytest.mark.parametrize("case", [
    "neg-strlen", "truncated", "empty", "huge-strlen", "acl-vector-truncated",
    "multi-bad-op", "multi-garbage", "setwatches-garbage",
])
def test_unparseable_body_marshalling_error(server, healthy, base, case):
    body = {
        "neg-strlen": (rawzk.OP_GETDATA, struct.pack(">i", -5) + b"\x00"),
        "truncated": (rawzk.OP_GETDATA, b"\x00\x00"),
        "empty": (rawzk.OP_GETDATA, b""),
        "huge-strlen": (rawzk.OP_GETDATA, rawzk.W().int(2000000).bytes()),
        "acl-vector-truncated": (rawzk.OP_CREATE,
                                 rawzk.W().ustring(base + "/x").buffer(b"").int(5).bytes()),
        "multi-bad-op": (rawzk.OP_MULTI, rawzk.W().int(77).bool(False).int(-1).int(-1)
                         .bool(True).int(-1).bytes()),
        "multi-garbage": (rawzk.OP_MULTI, b"\x00\x00"),
        "setwatches-garbage": (rawzk.OP_SETWATCHES, b"\x00"),
    }[case]
    c = raw_conn(server)
    try:
        xid = c.send_request(*body)
        res = outcome(c, xid)
        assert res == ("reply", rawzk.MARSHALLINGERROR, True), res
        assert c.exists(base + "/sentinel").err == 0   # same connection still usable
        assert c.exists(base + "/x").err == rawzk.NONODE
    finally:
        c.close()
    healthy()


def test_trailing_bytes_after_record(server, healthy, base):
    c = raw_conn(server)
    try:
        xid = c.send_request(rawzk.OP_GETDATA, rawzk.W().ustring(base + "/sentinel/child")
                             .bool(False).bytes() + b"junk")
        res = outcome(c, xid)
        # the real server ignores trailing bytes; rejecting them is acceptable too
        assert res[0] == "reply" and res[1] in (0, rawzk.MARSHALLINGERROR) and res[2], res
    finally:
        c.close()
    healthy()


def test_invalid_utf8_path(server, healthy, base):
    c = raw_conn(server)
    try:
        body = rawzk.W().buffer(base.encode() + b"/\xff\xfe").buffer(b"") \
            .acls(rawzk.WORLD_ALL).int(0).bytes()
        res = outcome(c, c.send_request(rawzk.OP_CREATE, body))
        assert res[0] == "reply" and res[1] in (rawzk.BADARGUMENTS, rawzk.MARSHALLINGERROR), res
        assert res[2]
        assert sorted(c.get_children(base).value) == ["sentinel"]
    finally:
        c.close()
    healthy()


@pytest.mark.parametrize("path", ["", "relative", "/a//b", "/a/", "/./a", "/a/..", "/\x00",
                                  "/a\x00b", "/\u0001", "/\ud7ff\ue000"])
def test_invalid_paths_create(server, healthy, path):
    c = raw_conn(server)
    try:
        rep = c.create(path)
        assert rep.err in (rawzk.BADARGUMENTS, rawzk.NONODE), rep
        assert c.ping().err == 0
    finally:
        c.close()
    healthy()


def test_long_node_name(server, healthy, base, zk):
    name = "n" * 60000
    c = raw_conn(server)
    try:
        assert c.create(base + "/" + name, b"long").err == 0
        assert zk.get(base + "/" + name)[0] == b"long"
        assert name in zk.get_children(base)
    finally:
        c.close()
    healthy()


def test_auth_with_empty_scheme(server, healthy):
    c = raw_conn(server)
    try:
        rep = c.auth("", b"")
        assert rep.err == rawzk.AUTHFAILED
        assert c.wait_closed(SOCK_TIMEOUT)
    finally:
        c.close()
    healthy()


def test_requests_after_close_session(server, healthy, base):
    c = raw_conn(server)
    try:
        assert c.close_session().err == 0
        try:
            c.send_request(rawzk.OP_EXISTS, rawzk.W().ustring(base).bool(False).bytes())
        except OSError:
            pass
        assert c.wait_closed(SOCK_TIMEOUT)
    finally:
        c.close()
    healthy()


def test_connection_storm_with_abrupt_closes(server, healthy, base):
    """Many connections that die at random points of the protocol."""
    rnd = random.Random(42)
    for i in range(60):
        c = rawzk.RawZK(server, timeout=SOCK_TIMEOUT)
        try:
            stage = rnd.randrange(4)
            if stage >= 1:
                c.connect(timeout_ms=4000)
            if stage >= 2:
                c.send_request(rawzk.OP_CREATE, rawzk.op_create(
                    base + "/storm-%d" % i, b"", flags=rawzk.EPHEMERAL)[1])
            if stage >= 3:
                c.send_raw(struct.pack(">i", 100) + b"\x00" * 10)   # half a frame
            if rnd.random() < 0.5:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            c.close()   # with SO_LINGER 0: RST
    healthy()


def test_sasl_without_sasl_configured(server, healthy):
    """op 102 with no SASL configured: any reply or a close is acceptable;
    the server must survive it."""
    c = raw_conn(server)
    try:
        for body in (rawzk.W().buffer(b"token").bytes(), b""):
            try:
                outcome(c, c.send_request(rawzk.OP_SASL, body))
            except OSError:
                break
    finally:
        c.close()
    healthy()
