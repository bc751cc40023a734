"""A small raw ZooKeeper client-protocol helper (jute encoder/decoder + socket).

Used for the operations kazoo has no API for (containers, TTL nodes, addWatch,
getAllChildrenNumber, getEphemerals, whoAmI, multiRead, removeWatches,
checkWatches, stand-alone check) and for byte-level tests (ordering of
notifications vs replies, bad input).

Everything is synchronous and bounded by socket timeouts.  Frames are read in
order; watch notifications (xid -1) are collected in ``RawZK.events`` and every
frame received is logged in ``RawZK.log`` so tests can check the relative
order of notifications and replies.
"""

import socket
import struct
import time
from dataclasses import dataclass, field
from typing import List, Optional

# ---------------------------------------------------------------------------
# constants

OP_NOTIFICATION = 0
OP_CREATE = 1
OP_DELETE = 2
OP_EXISTS = 3
OP_GETDATA = 4
OP_SETDATA = 5
OP_GETACL = 6
OP_SETACL = 7
OP_GETCHILDREN = 8
OP_SYNC = 9
OP_PING = 11
OP_GETCHILDREN2 = 12
OP_CHECK = 13
OP_MULTI = 14
OP_CREATE2 = 15
OP_RECONFIG = 16
OP_CHECKWATCHES = 17
OP_REMOVEWATCHES = 18
OP_CREATECONTAINER = 19
OP_DELETECONTAINER = 20
OP_CREATETTL = 21
OP_MULTIREAD = 22
OP_AUTH = 100
OP_SETWATCHES = 101
OP_SASL = 102
OP_GETEPHEMERALS = 103
OP_GETALLCHILDRENNUMBER = 104
OP_SETWATCHES2 = 105
OP_ADDWATCH = 106
OP_WHOAMI = 107
OP_CLOSESESSION = -11
OP_ERROR = -1

# error codes
OK = 0
SYSTEMERROR = -1
RUNTIMEINCONSISTENCY = -2
DATAINCONSISTENCY = -3
CONNECTIONLOSS = -4
MARSHALLINGERROR = -5
UNIMPLEMENTED = -6
OPERATIONTIMEOUT = -7
BADARGUMENTS = -8
NONODE = -101
NOAUTH = -102
BADVERSION = -103
NOCHILDRENFOREPHEMERALS = -108
NODEEXISTS = -110
NOTEMPTY = -111
SESSIONEXPIRED = -112
INVALIDACL = -114
AUTHFAILED = -115
NOWATCHER = -121

# create flags
PERSISTENT = 0
EPHEMERAL = 1
PERSISTENT_SEQUENTIAL = 2
EPHEMERAL_SEQUENTIAL = 3
CONTAINER = 4
PERSISTENT_WITH_TTL = 5
PERSISTENT_SEQUENTIAL_WITH_TTL = 6

# event types
EV_NODE_CREATED = 1
EV_NODE_DELETED = 2
EV_NODE_DATA_CHANGED = 3
EV_NODE_CHILDREN_CHANGED = 4

# watcher types (removeWatches/checkWatches)
WT_CHILDREN = 1
WT_DATA = 2
WT_ANY = 3

# addWatch modes
AW_PERSISTENT = 0
AW_PERSISTENT_RECURSIVE = 1

PERM_READ, PERM_WRITE, PERM_CREATE, PERM_DELETE, PERM_ADMIN = 1, 2, 4, 8, 16
PERM_ALL = 31

WORLD_ALL = [(PERM_ALL, "world", "anyone")]
WORLD_READ = [(PERM_READ, "world", "anyone")]


class ConnectionClosed(Exception):
    """The server closed the connection (EOF) or reset it."""


# ---------------------------------------------------------------------------
# jute encoding


class W:
    """Jute writer."""

    def __init__(self):
        self.parts = []

    def int(self, v):
        self.parts.append(struct.pack(">i", v))
        return self

    def long(self, v):
        self.parts.append(struct.pack(">q", v))
        return self

    def bool(self, v):
        self.parts.append(b"\x01" if v else b"\x00")
        return self

    def raw(self, b):
        self.parts.append(b)
        return self

    def buffer(self, b):
        if b is None:
            return self.int(-1)
        self.int(len(b))
        self.parts.append(b)
        return self

    def ustring(self, s):
        if s is None:
            return self.int(-1)
        if isinstance(s, str):
            s = s.encode("utf-8", "surrogatepass")
        return self.buffer(s)

    def strings(self, lst):
        if lst is None:
            return self.int(-1)
        self.int(len(lst))
        for s in lst:
            self.ustring(s)
        return self

    def acls(self, acls):
        if acls is None:
            return self.int(-1)
        self.int(len(acls))
        for perms, scheme, ident in acls:
            self.int(perms).ustring(scheme).ustring(ident)
        return self

    def bytes(self):
        return b"".join(self.parts)


class R:
    """Jute reader."""

    def __init__(self, data, pos=0):
        self.data = data
        self.pos = pos

    def _take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated record")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int(self):
        return struct.unpack(">i", self._take(4))[0]

    def long(self):
        return struct.unpack(">q", self._take(8))[0]

    def bool(self):
        return self._take(1) != b"\x00"

    def buffer(self):
        n = self.int()
        if n == -1:
            return None
        if n < 0:
            raise ValueError("negative length")
        return self._take(n)

    def ustring(self):
        b = self.buffer()
        return None if b is None else b.decode("utf-8", "replace")

    def strings(self):
        n = self.int()
        if n == -1:
            return None
        return [self.ustring() for _ in range(n)]

    def stat(self):
        return Stat(*struct.unpack(">qqqqiiiqiiq", self._take(68)))

    def acls(self):
        n = self.int()
        if n == -1:
            return None
        out = []
        for _ in range(n):
            perms = self.int()
            scheme = self.ustring()
            ident = self.ustring()
            out.append((perms, scheme, ident))
        return out

    def remaining(self):
        return len(self.data) - self.pos


@dataclass(frozen=True)
class Stat:
    czxid: int
    mzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    aversion: int
    ephemeralOwner: int
    dataLength: int
    numChildren: int
    pzxid: int


@dataclass
class Reply:
    xid: int
    zxid: int
    err: int
    value: object = None
    raw: bytes = field(default=b"", repr=False)


@dataclass
class Event:
    type: int
    state: int
    path: str
    zxid: int


@dataclass
class OpResult:
    """One result of a multi / multiRead."""
    type: int
    err: int
    value: object = None


# multi sub-op builders: each returns (opcode, body-bytes)

def op_create(path, data=b"", acl=WORLD_ALL, flags=0, opcode=OP_CREATE, ttl=None):
    """acl=None sends a null vector."""
    w = W().ustring(path).buffer(data).acls(acl).int(flags)
    if opcode == OP_CREATETTL:
        w.long(-1 if ttl is None else ttl)
    return (opcode, w.bytes())


def op_delete(path, version=-1):
    return (OP_DELETE, W().ustring(path).int(version).bytes())


def op_set_data(path, data, version=-1):
    return (OP_SETDATA, W().ustring(path).buffer(data).int(version).bytes())


def op_check(path, version):
    return (OP_CHECK, W().ustring(path).int(version).bytes())


def op_get_data(path):
    return (OP_GETDATA, W().ustring(path).bool(False).bytes())


def op_get_children(path):
    return (OP_GETCHILDREN, W().ustring(path).bool(False).bytes())


def encode_multi(ops):
    w = W()
    for opcode, body in ops:
        w.int(opcode).bool(False).int(-1).raw(body)
    w.int(-1).bool(True).int(-1)
    return w.bytes()


def decode_multi(r):
    results = []
    while True:
        typ = r.int()
        done = r.bool()
        err = r.int()
        if done:
            break
        if typ == OP_ERROR:
            results.append(OpResult(typ, r.int()))
        elif typ == OP_CREATE:
            results.append(OpResult(typ, err, r.ustring()))
        elif typ in (OP_CREATE2, OP_CREATECONTAINER, OP_CREATETTL):
            p = r.ustring()
            results.append(OpResult(typ, err, (p, r.stat())))
        elif typ in (OP_DELETE, OP_CHECK):
            results.append(OpResult(typ, err))
        elif typ == OP_SETDATA:
            results.append(OpResult(typ, err, r.stat()))
        elif typ == OP_GETDATA:
            d = r.buffer()
            results.append(OpResult(typ, err, (d, r.stat())))
        elif typ == OP_GETCHILDREN:
            results.append(OpResult(typ, err, r.strings()))
        else:
            raise ValueError("unknown multi result type %d" % typ)
    return results


def parse_hostport(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


# ---------------------------------------------------------------------------
# the client


class RawZK:
    """A raw connection.  ``RawZK(addr)`` opens the TCP connection only;
    call ``connect()`` for the session handshake."""

    def __init__(self, addr, timeout=10.0):
        self.addr = addr
        self.timeout = timeout
        host, port = parse_hostport(addr)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        self.xid = 0
        self.events: List[Event] = []
        self.log = []  # ("event", Event) / ("reply", xid, err)
        self.session_id = None
        self.passwd = None
        self.negotiated_timeout = None
        self.closed = False

    # -- context manager
    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    # -- framing
    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, body):
        self.sock.sendall(struct.pack(">i", len(body)) + body)

    def _recv_exact(self, n, deadline):
        while len(self._buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out waiting for %d bytes" % n)
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError as e:
                raise ConnectionClosed("connection reset") from e
            if not chunk:
                raise ConnectionClosed("EOF")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def recv_frame(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        (n,) = struct.unpack(">i", self._recv_exact(4, deadline))
        if n < 0 or n > 64 * 1024 * 1024:
            raise ValueError("bad frame length from server: %d" % n)
        return self._recv_exact(n, deadline)

    def wait_closed(self, timeout=5.0):
        """True if the server closes the connection within timeout (any
        further frames are consumed and logged)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._handle_frame(self.recv_frame(timeout=max(0.01, deadline - time.monotonic())))
            except (ConnectionClosed, BrokenPipeError):
                return True
            except socket.timeout:
                return False
            except OSError:
                return True
        return False

    # -- session
    def connect(self, timeout_ms=30000, session_id=0, passwd=b"\x00" * 16,
                last_zxid=0, read_only=True):
        w = W().int(0).long(last_zxid).int(timeout_ms).long(session_id).buffer(passwd)
        if read_only is not None:
            w.bool(read_only)
        self.send_frame(w.bytes())
        r = R(self.recv_frame())
        proto = r.int()
        self.negotiated_timeout = r.int()
        self.session_id = r.long()
        self.passwd = r.buffer()
        self.connect_read_only = r.bool() if r.remaining() else None
        self.connect_proto = proto
        return self

    # -- requests
    def next_xid(self):
        self.xid += 1
        return self.xid

    def send_request(self, op, body=b"", xid=None):
        if xid is None:
            xid = self.next_xid()
        self.send_frame(struct.pack(">ii", xid, op) + body)
        return xid

    def _handle_frame(self, frame):
        r = R(frame)
        xid, zxid, err = r.int(), r.long(), r.int()
        if xid == -1:
            ev = Event(r.int(), r.int(), r.ustring(), zxid)
            self.events.append(ev)
            self.log.append(("event", ev))
            return None
        self.log.append(("reply", xid, err))
        return Reply(xid, zxid, err, None, frame[16:])

    def read_reply(self, xid, timeout=None):
        if self.closed:
            raise ConnectionClosed("connection already closed (earlier timeout or close)")
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                frame = self.recv_frame(timeout=max(0.01, deadline - time.monotonic()))
            except socket.timeout:
                # the reply may still come later: this connection can no longer
                # pair replies with requests, so close it
                self.close()
                raise socket.timeout("no reply to xid %d within %.1fs" % (
                    xid, self.timeout if timeout is None else timeout))
            rep = self._handle_frame(frame)
            if rep is None:
                continue
            if rep.xid != xid:
                raise AssertionError("reply xid %d, expected %d (out of order)" % (rep.xid, xid))
            return rep

    def request(self, op, body=b"", xid=None, parse=None, timeout=None):
        xid = self.send_request(op, body, xid)
        rep = self.read_reply(-2 if op == OP_PING else xid, timeout=timeout)
        if rep.err == 0 and parse is not None:
            rep.value = parse(R(rep.raw))
        return rep

    def wait_event(self, pred=lambda e: True, timeout=10.0):
        """Wait for an event matching pred (already received or arriving)."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if pred(ev):
                    return ev
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                frame = self.recv_frame(timeout=remaining)
            except socket.timeout:
                return None
            rep = self._handle_frame(frame)
            if rep is not None:
                raise AssertionError("unexpected reply xid %d while waiting for an event" % rep.xid)

    def drain_events(self, quiet=0.3):
        """Read frames for `quiet` seconds, collecting events."""
        deadline = time.monotonic() + quiet
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return list(self.events)
            try:
                frame = self.recv_frame(timeout=remaining)
            except socket.timeout:
                return list(self.events)
            rep = self._handle_frame(frame)
            if rep is not None:
                raise AssertionError("unexpected reply xid %d while draining" % rep.xid)

    # -- ops (return Reply; .value parsed on success)
    def create(self, path, data=b"", acl=WORLD_ALL, flags=0, opcode=OP_CREATE, ttl=None):
        _, body = op_create(path, data, acl, flags, opcode, ttl)
        if opcode == OP_CREATE:
            parse = lambda r: r.ustring()
        else:
            parse = lambda r: (r.ustring(), r.stat())
        return self.request(opcode, body, parse=parse)

    def create_container(self, path, data=b"", acl=WORLD_ALL):
        return self.create(path, data, acl, CONTAINER, OP_CREATECONTAINER)

    def create_ttl(self, path, ttl, data=b"", acl=WORLD_ALL, flags=PERSISTENT_WITH_TTL):
        return self.create(path, data, acl, flags, OP_CREATETTL, ttl)

    def delete(self, path, version=-1):
        return self.request(OP_DELETE, op_delete(path, version)[1])

    def exists(self, path, watch=False):
        return self.request(OP_EXISTS, W().ustring(path).bool(watch).bytes(),
                            parse=lambda r: r.stat())

    def get_data(self, path, watch=False):
        return self.request(OP_GETDATA, W().ustring(path).bool(watch).bytes(),
                            parse=lambda r: (r.buffer(), r.stat()))

    def set_data(self, path, data, version=-1):
        return self.request(OP_SETDATA, op_set_data(path, data, version)[1],
                            parse=lambda r: r.stat())

    def get_acl(self, path):
        return self.request(OP_GETACL, W().ustring(path).bytes(),
                            parse=lambda r: (r.acls(), r.stat()))

    def set_acl(self, path, acl, version=-1):
        return self.request(OP_SETACL, W().ustring(path).acls(acl).int(version).bytes(),
                            parse=lambda r: r.stat())

    def get_children(self, path, watch=False):
        return self.request(OP_GETCHILDREN, W().ustring(path).bool(watch).bytes(),
                            parse=lambda r: r.strings())

    def get_children2(self, path, watch=False):
        return self.request(OP_GETCHILDREN2, W().ustring(path).bool(watch).bytes(),
                            parse=lambda r: (r.strings(), r.stat()))

    def sync(self, path):
        return self.request(OP_SYNC, W().ustring(path).bytes(), parse=lambda r: r.ustring())

    def check(self, path, version, timeout=None):
        return self.request(OP_CHECK, op_check(path, version)[1], timeout=timeout)

    def multi(self, ops):
        return self.request(OP_MULTI, encode_multi(ops), parse=decode_multi)

    def multi_read(self, ops):
        return self.request(OP_MULTIREAD, encode_multi(ops), parse=decode_multi)

    def add_watch(self, path, mode):
        return self.request(OP_ADDWATCH, W().ustring(path).int(mode).bytes(),
                            parse=lambda r: r.int() if r.remaining() >= 4 else None)

    def remove_watches(self, path, wtype):
        return self.request(OP_REMOVEWATCHES, W().ustring(path).int(wtype).bytes())

    def check_watches(self, path, wtype):
        return self.request(OP_CHECKWATCHES, W().ustring(path).int(wtype).bytes())

    def get_ephemerals(self, prefix):
        return self.request(OP_GETEPHEMERALS, W().ustring(prefix).bytes(),
                            parse=lambda r: r.strings())

    def get_all_children_number(self, path):
        return self.request(OP_GETALLCHILDRENNUMBER, W().ustring(path).bytes(),
                            parse=lambda r: r.int())

    def whoami(self):
        def parse(r):
            n = r.int()
            return [(r.ustring(), r.ustring()) for _ in range(max(n, 0))]
        return self.request(OP_WHOAMI, b"", parse=parse)

    def auth(self, scheme, credential):
        if isinstance(credential, str):
            credential = credential.encode()
        return self.request(OP_AUTH, W().int(0).ustring(scheme).buffer(credential).bytes(),
                            xid=-4)

    def set_watches(self, relative_zxid, data=(), exist=(), child=()):
        body = W().long(relative_zxid).strings(list(data)).strings(list(exist)).strings(list(child)).bytes()
        return self.request(OP_SETWATCHES, body)

    def ping(self):
        return self.request(OP_PING, b"", xid=-2)

    def close_session(self):
        return self.request(OP_CLOSESESSION, b"")


def connect(addr, timeout_ms=30000, **kw):
    return RawZK(addr).connect(timeout_ms=timeout_ms, **kw)


def four_letter(addr, cmd, timeout=5.0):
    """Send a four-letter word and read the whole reply until EOF."""
    host, port = parse_hostport(addr)
    if isinstance(cmd, str):
        cmd = cmd.encode()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(cmd)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
