"""Differential tests: the same operation scripts run against Apache ZooKeeper
3.8 (the reference) and corezk; their transcripts must be equal.

A transcript records, per step, the outcome (ok + normalised value, or the
error code / kazoo exception name).  Values are normalised so that nothing
server-specific remains: Stats become version/count fields plus zxid
*relations* (never raw zxids, times or session ids), children lists are sorted,
the scenario's base path is replaced by "$B".

Behaviours that are plain bugs in ZooKeeper 3.8.0 (see the last section of
docs/zookeeper-wire-protocol.md) are deliberately not exercised here:
stand-alone check on an existing node (hangs), removeWatches/checkWatches with
types 4/5, cross-connection checkWatches, create flags 5/6 inside multi with
opcodes 1/15/19, getData(""), notification zxids, standard + persistent watch
on the same path (ZOOKEEPER-4466), exists() ACL check (added after 3.8.0).

Set ZK_DIFF_CANDIDATE=zk to diff ZooKeeper against a second ZooKeeper (checks
that the scenarios are deterministic).
"""

import os
import socket
import time

import pytest
from kazoo.exceptions import KazooException
from kazoo.protocol.states import ZnodeStat
from kazoo.security import ACL, Id, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, make_acl, \
    make_digest_acl, make_digest_acl_credential

import rawzk
import servers
from conftest import ClientFactory, start_kazoo, stop_kazoo
from helpers import stat_shape, wait_until

SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


class Env:
    def __init__(self, addr, base):
        self.addr = addr
        self.base = base
        self.factory = ClientFactory(addr)
        self.rec = []

    def kz(self, **kw):
        return self.factory.kazoo(**kw)

    def raw(self, **kw):
        r = self.factory.raw(**kw)
        r.timeout = 15.0
        return r

    def norm(self, v):
        b = self.base
        if isinstance(v, (ZnodeStat, rawzk.Stat)):
            return ("stat", tuple(sorted(stat_shape(v).items())))
        if isinstance(v, rawzk.Reply):
            return ("reply", v.err, self.norm(v.value))
        if isinstance(v, rawzk.OpResult):
            return ("op", v.type, v.err, self.norm(v.value))
        if isinstance(v, rawzk.Event):
            return ("event", v.type, v.state, self.norm(v.path))
        if isinstance(v, ACL):
            return ("acl", v.perms, v.id.scheme, v.id.id)
        if isinstance(v, BaseException):
            return ("exc", type(v).__name__)
        if isinstance(v, str):
            return v.replace(b, "$B") if b else v
        if isinstance(v, bytes):
            return v
        if isinstance(v, dict):
            return tuple(sorted((k, self.norm(x)) for k, x in v.items()))
        if isinstance(v, (list, tuple)):
            return tuple(self.norm(x) for x in v)
        return v

    def out(self, label, value):
        self.rec.append((label, self.norm(value)))
        return value

    def call(self, label, fn, *args, **kw):
        """Run fn; record ok+value or the error; return the value (or None)."""
        try:
            v = fn(*args, **kw)
        except KazooException as e:
            self.rec.append((label, ("exc", type(e).__name__)))
            return None
        except (rawzk.ConnectionClosed, socket.timeout, OSError) as e:
            self.rec.append((label, ("io-error", type(e).__name__)))
            return None
        self.rec.append((label, ("ok", self.norm(v))))
        return v

    def rcall(self, label, fn, *args, **kw):
        """Raw call: record (err, value)."""
        try:
            rep = fn(*args, **kw)
        except (rawzk.ConnectionClosed, socket.timeout, OSError) as e:
            self.rec.append((label, ("io-error", "%s: %s" % (type(e).__name__, e))))
            return None
        self.rec.append((label, ("err", rep.err, self.norm(rep.value))))
        return rep

    def close(self):
        self.factory.close()


def fence(env, c, zk, name):
    """Wait until every event caused by earlier writes reached raw conn c."""
    p = env.base + "/" + name
    c.exists(p, watch=True)
    zk.create(p)
    ev = c.wait_event(lambda e: e.path == p, timeout=8)
    assert ev is not None, "fence event for %s never arrived" % p
    evs = [e for e in c.events if e.path != p]
    c.events.clear()
    return evs


# ====================================================================== scenarios

@scenario
def crud(env):
    zk = env.kz()
    b = env.base
    env.call("create", zk.create, b + "/a", b"v1")
    env.call("create-dup", zk.create, b + "/a", b"v2")
    env.call("create-include", zk.create, b + "/inc", b"xyz", include_data=True)
    env.call("get", zk.get, b + "/a")
    env.call("set", zk.set, b + "/a", b"v2")
    env.call("set-badversion", zk.set, b + "/a", b"v3", version=0)
    env.call("set-v1", zk.set, b + "/a", b"v3", version=1)
    env.call("get2", zk.get, b + "/a")
    env.call("get-missing", zk.get, b + "/missing")
    env.call("set-missing", zk.set, b + "/missing", b"")
    env.call("exists", zk.exists, b + "/a")
    env.call("exists-missing", zk.exists, b + "/missing")
    env.call("create-null", zk.create, b + "/null", None)
    env.call("get-null", zk.get, b + "/null")
    env.call("create-empty", zk.create, b + "/empty", b"")
    env.call("get-empty", zk.get, b + "/empty")
    env.call("delete-badversion", zk.delete, b + "/a", version=5)
    env.call("delete-v2", zk.delete, b + "/a", version=2)
    env.call("delete-again", zk.delete, b + "/a")
    env.call("create-noparent", zk.create, b + "/x/y")
    env.call("makepath", zk.create, b + "/x/y/z", b"d", makepath=True)
    env.call("delete-notempty", zk.delete, b + "/x")
    env.call("children", lambda: sorted(zk.get_children(b)))
    env.call("children2", lambda: (lambda r: (sorted(r[0]), r[1]))(
        zk.get_children(b, include_data=True)))
    env.call("children-missing", zk.get_children, b + "/missing")
    env.call("recursive-delete", zk.delete, b + "/x", recursive=True)
    env.call("children-after", lambda: sorted(zk.get_children(b)))
    env.call("sync", zk.sync, b)
    big = bytes(range(256)) * 3000
    env.call("create-big", zk.create, b + "/big", big)
    env.call("get-big", lambda: zk.get(b + "/big")[0] == big)


@scenario
def ephemerals(env):
    zk = env.kz()
    other = env.kz()
    b = env.base
    env.call("create-eph", other.create, b + "/e", b"", ephemeral=True)
    st = zk.exists(b + "/e")
    env.out("owner-is-session", st.ephemeralOwner == other.client_id[0])
    env.call("child-of-eph", zk.create, b + "/e/c")
    env.call("seq-child-of-eph", zk.create, b + "/e/c", sequence=True)
    env.call("eph-child-of-eph", other.create, b + "/e/c", ephemeral=True)
    env.call("dup-eph", zk.create, b + "/e")     # NodeExists wins
    env.call("create-eph-seq", other.create, b + "/es-", ephemeral=True, sequence=True)
    env.call("set-eph", zk.set, b + "/e", b"data")
    env.call("stat-eph", zk.exists, b + "/e")
    other.stop()
    env.call("children-after-close", lambda: sorted(zk.get_children(b)))
    env.call("parent-stat", zk.exists, b)


@scenario
def sequential_numbering(env):
    zk = env.kz()
    b = env.base
    for i in range(3):
        env.call("seq%d" % i, zk.create, b + "/s-", sequence=True)
    env.call("plain", zk.create, b + "/plain")
    env.call("delete0", zk.delete, b + "/s-0000000000")
    env.call("seq-after-delete", zk.create, b + "/s-", sequence=True)
    env.call("seq-other-prefix", zk.create, b + "/q", sequence=True)
    env.call("eph-seq", zk.create, b + "/e-", ephemeral=True, sequence=True)
    t = zk.transaction()
    t.create(b + "/m-", sequence=True)
    t.create(b + "/m-", sequence=True)
    env.call("multi-seq", t.commit)
    t = zk.transaction()
    t.create(b + "/f-", sequence=True)
    t.delete(b + "/nope")
    env.call("failed-multi-seq", t.commit)
    env.call("seq-after-failed-multi", zk.create, b + "/s-", sequence=True)
    c = env.raw()
    env.rcall("raw-seq-trailing-slash-missing", c.create, b + "/dir/", flags=rawzk.PERSISTENT_SEQUENTIAL)
    env.rcall("raw-seq-trailing-slash", c.create, b + "/", flags=rawzk.PERSISTENT_SEQUENTIAL)
    env.rcall("raw-eph-seq-trailing-slash", c.create, b + "/", flags=rawzk.EPHEMERAL_SEQUENTIAL)
    env.rcall("raw-seq-missing-parent", c.create, b + "/nodir/x", flags=rawzk.PERSISTENT_SEQUENTIAL)
    env.call("parent-stat", zk.exists, b)
    env.call("children", lambda: sorted(zk.get_children(b)))


@scenario
def stat_relations(env):
    zk = env.kz()
    b = env.base
    p0 = zk.exists(b)
    c1 = zk.create(b + "/c1", b"12345")
    s1 = zk.exists(c1)
    p1 = zk.exists(b)
    env.out("create: parent pzxid == child czxid", p1.pzxid == s1.czxid)
    env.out("create: parent mzxid unchanged", p1.mzxid == p0.mzxid)
    env.out("create: child mzxid==czxid==pzxid", s1.mzxid == s1.czxid == s1.pzxid)
    env.out("create: ctime==mtime", s1.ctime == s1.mtime)
    env.out("parent-after-create", p1)
    s2 = zk.set(c1, b"1")
    env.out("set: czxid kept", s2.czxid == s1.czxid)
    env.out("set: mzxid advanced", s2.mzxid > s1.mzxid)
    env.out("set: pzxid kept", s2.pzxid == s1.pzxid)
    env.out("set-stat", s2)
    s3 = zk.set_acls(c1, OPEN_ACL_UNSAFE)
    env.out("setacl: mzxid kept", s3.mzxid == s2.mzxid)
    env.out("setacl-stat", s3)
    zk.create(c1 + "/k1")
    zk.create(c1 + "/k2")
    zk.delete(c1 + "/k1")
    s4 = zk.exists(c1)
    env.out("children ops: mzxid kept", s4.mzxid == s2.mzxid)
    env.out("children ops: pzxid advanced", s4.pzxid > s2.pzxid)
    env.out("children-stat", s4)
    zk.delete(c1 + "/k2")
    env.out("all-children-deleted-stat", zk.exists(c1))
    t = zk.transaction()
    t.create(b + "/m1")
    t.create(b + "/m2")
    t.set_data(b + "/m1", b"x")
    t.commit()
    m1, m2 = zk.exists(b + "/m1"), zk.exists(b + "/m2")
    env.out("multi: same czxid", m1.czxid == m2.czxid)
    env.out("multi: same ctime", m1.ctime == m2.ctime)
    env.out("multi: set in same txn mzxid==czxid", m1.mzxid == m1.czxid)
    env.out("multi-m1", m1)
    e = zk.create(b + "/eph", b"", ephemeral=True)
    env.out("eph-stat", zk.exists(e))


@scenario
def error_check_order(env):
    """§6.2 check order of the real server."""
    zk = env.kz()
    b = env.base
    c = env.raw()
    bad_acl = [(31, "world", "nobody")]
    noperm = [(rawzk.PERM_READ, "world", "anyone")]   # no CREATE/DELETE/WRITE/ADMIN
    zk.create(b + "/ro", b"", acl=[make_acl("world", "anyone", read=True)])
    zk.create(b + "/locked")
    zk.create(b + "/locked/kid")
    zk.set_acls(b + "/locked", [make_acl("world", "anyone", read=True)])
    zk.create(b + "/full")
    zk.create(b + "/full/kid")
    zk.create(b + "/eph", ephemeral=True)
    # create
    env.rcall("create: bad flags beat missing parent", c.create, b + "/missing/x", flags=7)
    env.rcall("create: bad ttl beats missing parent", c.create_ttl, b + "/missing/x", 0)
    env.rcall("create: no slash", c.create, "x")
    env.rcall("create: bad ACL beats missing parent", c.create, b + "/missing/x", acl=bad_acl)
    env.rcall("create: null ACL beats missing parent", c.create, b + "/missing/x", acl=None)
    env.rcall("create: missing parent beats NoAuth/invalid path", c.create, b + "/missing/.")
    env.rcall("create: NoAuth beats invalid path", c.create, b + "/ro/.")
    env.rcall("create: NoAuth beats NodeExists", c.create, b + "/locked/kid")
    env.rcall("create: NoAuth on parent", c.create, b + "/ro/new")
    env.rcall("create: invalid path after parent ok", c.create, b + "/full/")
    env.rcall("create: '//' gives NoNode", c.create, b + "//x")
    env.rcall("create: NodeExists beats ephemeral parent", c.create, b + "/eph")
    env.rcall("create: ephemeral parent", c.create, b + "/eph/x")
    env.rcall("create: root exists", c.create, "/")
    env.rcall("create: NUL", c.create, b + "/a\x00b")
    # delete
    env.rcall("delete: BadVersion beats NotEmpty", c.delete, b + "/full", 42)
    env.rcall("delete: NotEmpty", c.delete, b + "/full", -1)
    env.rcall("delete: missing node", c.delete, b + "/missing")
    env.rcall("delete: missing parent", c.delete, b + "/missing/x")
    env.rcall("delete: NoAuth on parent beats missing node", c.delete, b + "/ro/nothing")
    env.rcall("delete: trailing slash not validated", c.delete, b + "/full/")
    env.rcall("delete: no slash", c.delete, "x")
    env.rcall("delete: root", c.delete, "/")
    for sp in ("/zookeeper", "/zookeeper/quota", "/zookeeper/config"):
        env.rcall("delete: special %s" % sp, c.delete, sp)
    # setData
    env.rcall("setData: invalid path", c.set_data, b + "/full/", b"")
    env.rcall("setData: missing node + bad version", c.set_data, b + "/missing", b"", 3)
    env.rcall("setData: NoAuth beats BadVersion", c.set_data, b + "/ro", b"", 3)
    env.rcall("setData: BadVersion", c.set_data, b + "/full", b"", 3)
    env.rcall("setData: /zookeeper/config", c.set_data, "/zookeeper/config", b"x")
    # setACL
    env.rcall("setACL: invalid ACL beats NoNode", c.set_acl, b + "/missing", bad_acl)
    env.rcall("setACL: empty ACL beats NoNode", c.set_acl, b + "/missing", [])
    env.rcall("setACL: invalid path beats invalid ACL", c.set_acl, b + "/full/", bad_acl)
    env.rcall("setACL: missing node", c.set_acl, b + "/missing", rawzk.WORLD_ALL)
    env.rcall("setACL: NoAuth beats BadVersion", c.set_acl, b + "/ro", rawzk.WORLD_ALL, 7)
    env.rcall("setACL: BadVersion", c.set_acl, b + "/full", rawzk.WORLD_ALL, 7)
    env.rcall("setACL: ok", c.set_acl, b + "/full", rawzk.WORLD_ALL, 0)
    # reads
    zk.create(b + "/secret", b"s", acl=[make_digest_acl("u", "p", all=True)])
    env.rcall("getData: NoAuth", c.get_data, b + "/secret")
    env.rcall("getData: missing", c.get_data, b + "/missing")
    env.rcall("getChildren: NoAuth", c.get_children, b + "/secret")
    env.rcall("getChildren2: missing", c.get_children2, b + "/missing")
    env.rcall("getACL: missing", c.get_acl, b + "/missing")
    env.rcall("getACL: no READ/ADMIN", c.get_acl, b + "/secret")
    zk.create(b + "/masked", b"", acl=[make_digest_acl("u", "p", all=True),
                                       make_acl("world", "anyone", read=True)])
    env.rcall("getACL: masked", c.get_acl, b + "/masked")
    env.rcall("exists: NUL", c.exists, b + "/x\x00")
    # check inside multi
    env.rcall("multi check: missing", c.multi, [rawzk.op_check(b + "/missing", 0)])
    env.rcall("multi check: NoAuth beats BadVersion", c.multi, [rawzk.op_check(b + "/secret", 9)])
    env.rcall("multi check: BadVersion", c.multi, [rawzk.op_check(b + "/full", 9)])
    env.rcall("multi check: invalid path", c.multi, [rawzk.op_check(b + "/full/", 0)])
    env.rcall("children-final", lambda: (lambda r: rawzk.Reply(r.xid, 0, r.err, sorted(r.value)))(
        c.get_children(b)))


@scenario
def invalid_paths(env):
    c = env.raw()
    b = env.base
    c.create(b + "/n")
    bad = ["noslash", b + "/", b + "//n", b + "/.", b + "/..", b + "/./x", b + "/a\x01",
           b + "/a\x7f", b + "/a\u0090", b + "/a\ue123", b + "/a\ufff5", b + "/n/"]
    good_odd = [b + "/...", b + "/.a", b + "/a.", b + "/\u00e9t\u00e9", b + "/sp ace"]
    for p in bad:
        env.rcall("create %r" % p.replace(b, "$B"), c.create, p)
        env.rcall("setData %r" % p.replace(b, "$B"), c.set_data, p, b"")
        env.rcall("delete %r" % p.replace(b, "$B"), c.delete, p)
        env.rcall("getData %r" % p.replace(b, "$B"), c.get_data, p)
        env.rcall("getChildren %r" % p.replace(b, "$B"), c.get_children, p)
        env.rcall("exists %r" % p.replace(b, "$B"), c.exists, p)
        env.rcall("setACL %r" % p.replace(b, "$B"), c.set_acl, p, rawzk.WORLD_ALL)
        env.rcall("getACL %r" % p.replace(b, "$B"), c.get_acl, p)
    for p in good_odd:
        env.rcall("create-ok %r" % p.replace(b, "$B"), c.create, p, b"d")
        env.rcall("get-ok %r" % p.replace(b, "$B"), c.get_data, p)
    env.rcall("children", lambda: (lambda r: rawzk.Reply(r.xid, 0, r.err, sorted(r.value)))(
        c.get_children(b)))


@scenario
def multi_results(env):
    zk = env.kz()
    c = env.raw()
    b = env.base
    zk.create(b + "/a", b"a")
    zk.create(b + "/full/kid", makepath=True)
    ok = c.multi([rawzk.op_create(b + "/n1", b"x"),
                  rawzk.op_create(b + "/n1/n2"),
                  rawzk.op_set_data(b + "/a", b"b", 0),
                  rawzk.op_check(b + "/a", 1),
                  rawzk.op_delete(b + "/n1/n2"),
                  rawzk.op_create(b + "/s-", flags=rawzk.PERSISTENT_SEQUENTIAL)])
    env.out("success", (ok.err, ok.value))
    failing = [
        ("fail-first", [rawzk.op_create(b + "/a"), rawzk.op_create(b + "/z")]),
        ("fail-middle", [rawzk.op_create(b + "/y"), rawzk.op_set_data(b + "/a", b"", 0),
                         rawzk.op_delete(b + "/y")]),
        ("fail-last", [rawzk.op_create(b + "/y"), rawzk.op_delete(b + "/full")]),
        ("fail-check", [rawzk.op_check(b + "/a", 0), rawzk.op_create(b + "/y")]),
        ("fail-invalid-acl", [rawzk.op_create(b + "/y", acl=[(31, "world", "x")])]),
        ("fail-nochildren-eph", [rawzk.op_create(b + "/e", flags=rawzk.EPHEMERAL),
                                 rawzk.op_create(b + "/e/x")]),
        ("fail-delete-then-use", [rawzk.op_delete(b + "/a"), rawzk.op_set_data(b + "/a", b"")]),
        ("fail-invalid-path", [rawzk.op_create(b + "/y"), rawzk.op_create(b + "/y/")]),
        ("fail-bad-version-delete", [rawzk.op_delete(b + "/full", 5)]),
    ]
    for label, ops in failing:
        env.rcall(label, c.multi, ops)
    env.rcall("empty-multi", c.multi, [])
    env.rcall("mixed-read-write", c.multi, [rawzk.op_create(b + "/y"), rawzk.op_get_data(b)])
    env.rcall("multi-read", c.multi_read, [rawzk.op_get_data(b + "/a"),
                                            rawzk.op_get_children(b + "/missing"),
                                            rawzk.op_get_children(b + "/full")])
    env.rcall("empty-multi-read", c.multi_read, [])
    env.rcall("multi-container", c.multi, [rawzk.op_create(b + "/ct", flags=rawzk.CONTAINER,
                                                           opcode=rawzk.OP_CREATECONTAINER)])
    env.rcall("multi-ttl", c.multi, [rawzk.op_create(b + "/ttl", flags=rawzk.PERSISTENT_WITH_TTL,
                                                     opcode=rawzk.OP_CREATETTL, ttl=600000)])
    t = zk.transaction()
    t.create(b + "/k1")
    t.check(b + "/a", 99)
    t.create(b + "/k2")
    env.call("kazoo-failed-txn", t.commit)
    env.call("children", lambda: sorted(zk.get_children(b)))
    env.call("a", zk.get, b + "/a")


@scenario
def watch_sequences(env):
    zk = env.kz()
    b = env.base
    c = env.raw()
    zk.create(b + "/d", b"")
    zk.create(b + "/p")
    zk.create(b + "/p/k")
    c.get_data(b + "/d", watch=True)
    c.exists(b + "/new", watch=True)
    c.get_children(b + "/p", watch=True)
    c.get_data(b + "/p/k", watch=True)
    c.get_children(b, watch=True)
    zk.set(b + "/d", b"1")
    zk.set(b + "/d", b"2")                  # one-shot: no second event
    zk.create(b + "/new")
    zk.delete(b + "/p/k")
    env.out("events-1", fence(env, c, zk, "f1"))
    # re-arm, then a multi with several triggers
    c.get_data(b + "/d", watch=True)
    c.get_children(b + "/p", watch=True)
    c.exists(b + "/p/m", watch=True)
    t = zk.transaction()
    t.create(b + "/p/m")
    t.set_data(b + "/d", b"3")
    t.delete(b + "/new")
    t.commit()
    env.out("events-multi", fence(env, c, zk, "f2"))
    # failed multi, setACL, sync, reads: nothing
    c.get_data(b + "/d", watch=True)
    t = zk.transaction()
    t.set_data(b + "/d", b"4")
    t.check(b + "/d", 99)
    t.commit()
    zk.set_acls(b + "/d", OPEN_ACL_UNSAFE)
    zk.sync(b + "/d")
    env.out("events-nothing", fence(env, c, zk, "f3"))
    # ephemeral removed by session close fires NodeDeleted + parent change
    other = env.kz()
    other.create(b + "/eph", ephemeral=True)
    c.get_data(b + "/eph", watch=True)
    c.get_children(b, watch=True)
    other.stop()
    env.out("events-session-close", fence(env, c, zk, "f4"))
    # delete a node with both data and child watch: one NodeDeleted
    zk.create(b + "/both")
    c.get_data(b + "/both", watch=True)
    c.get_children(b + "/both", watch=True)
    zk.delete(b + "/both")
    env.out("events-delete-both", fence(env, c, zk, "f5"))
    # own write: event before reply
    c.get_data(b + "/d", watch=True)
    c.log.clear()
    c.set_data(b + "/d", b"own")
    env.out("own-write-order", [e[0] for e in c.log])


@scenario
def persistent_watches(env):
    zk = env.kz()
    b = env.base
    c = env.raw()
    env.rcall("addWatch persistent", c.add_watch, b + "/p", rawzk.AW_PERSISTENT)
    env.rcall("addWatch recursive", c.add_watch, b + "/r", rawzk.AW_PERSISTENT_RECURSIVE)
    env.rcall("addWatch bad mode", c.add_watch, b + "/r", 7)
    zk.create(b + "/p")
    zk.set(b + "/p", b"1")
    zk.create(b + "/p/c")
    zk.set(b + "/p/c", b"x")
    zk.delete(b + "/p/c")
    zk.create(b + "/r")
    zk.create(b + "/r/a")
    zk.create(b + "/r/a/b")
    zk.set(b + "/r/a/b", b"deep")
    t = zk.transaction()
    t.delete(b + "/r/a/b")
    t.delete(b + "/r/a")
    t.commit()
    env.out("events", fence(env, c, zk, "f1"))
    env.rcall("removeWatches any persistent", c.remove_watches, b + "/p", rawzk.WT_ANY)
    env.rcall("removeWatches again", c.remove_watches, b + "/p", rawzk.WT_ANY)
    env.rcall("checkWatches recursive any", c.check_watches, b + "/r", rawzk.WT_ANY)
    env.rcall("removeWatches recursive any", c.remove_watches, b + "/r", rawzk.WT_ANY)
    zk.set(b + "/p", b"2")
    zk.create(b + "/r/z")
    env.out("events-after-remove", fence(env, c, zk, "f2"))
    env.rcall("removeWatches bad type", c.remove_watches, b, 99)
    c.get_data(b + "/p", watch=True)
    env.rcall("checkWatches data", c.check_watches, b + "/p", rawzk.WT_DATA)
    env.rcall("checkWatches children none", c.check_watches, b + "/p", rawzk.WT_CHILDREN)
    env.rcall("removeWatches data", c.remove_watches, b + "/p", rawzk.WT_DATA)
    env.rcall("checkWatches data gone", c.check_watches, b + "/p", rawzk.WT_DATA)


@scenario
def acls(env):
    zk = env.kz()
    b = env.base
    digest = make_digest_acl("alice", "pw", all=True)
    env.call("create-digest", zk.create, b + "/d", b"secret", acl=[digest])
    env.call("get-noauth", zk.get, b + "/d")
    env.call("set-noauth", zk.set, b + "/d", b"")
    env.call("children-noauth", zk.get_children, b + "/d")
    env.call("getacl-noauth", zk.get_acls, b + "/d")
    env.call("delete-open-parent", zk.create, b + "/d2", b"", acl=[digest])
    env.call("delete-d2", zk.delete, b + "/d2")
    alice = env.kz(auth_data=[("digest", "alice:pw")])
    env.call("alice-get", alice.get, b + "/d")
    env.call("alice-getacl", alice.get_acls, b + "/d")
    env.call("alice-create-auth", alice.create, b + "/d/k", b"",
             acl=[ACL(31, Id("auth", ""))])
    env.call("alice-getacl-auth", alice.get_acls, b + "/d/k")
    env.call("auth-scheme-unauth", zk.create, b + "/x", b"", acl=[ACL(31, Id("auth", ""))])
    env.call("mixed", zk.create, b + "/mixed", b"", acl=[digest, make_acl("world", "anyone",
                                                                            read=True)])
    env.call("mixed-getacl-masked", zk.get_acls, b + "/mixed")
    env.call("readonly", zk.create, b + "/ro", b"", acl=READ_ACL_UNSAFE)
    env.call("readonly-set", zk.set, b + "/ro", b"x")
    env.call("readonly-child", zk.create, b + "/ro/c")
    env.call("readonly-setacl", zk.set_acls, b + "/ro", OPEN_ACL_UNSAFE)
    env.call("setacl-version", zk.set_acls, b + "/mixed", OPEN_ACL_UNSAFE, version=3)
    env.call("admin-only", zk.create, b + "/adm", b"v", acl=[make_acl("world", "anyone",
                                                                        admin=True)])
    env.call("admin-only-getacl", zk.get_acls, b + "/adm")
    env.call("admin-only-get", zk.get, b + "/adm")
    env.call("admin-only-setacl", zk.set_acls, b + "/adm", OPEN_ACL_UNSAFE, version=0)
    env.call("admin-only-get-after", zk.get, b + "/adm")
    su = env.kz(auth_data=[("digest", "super:test")])
    env.call("super-get", su.get, b + "/d")
    env.call("super-getacl", su.get_acls, b + "/mixed")
    env.call("super-set", su.set, b + "/ro", b"su")
    env.call("super-delete-child", su.delete, b + "/d/k")
    for i, a in enumerate([[ACL(31, Id("world", "nobody"))], [ACL(31, Id("digest", "bad"))],
                           [ACL(31, Id("ip", "300.1.1.1"))], [ACL(31, Id("ip", "10.0.0.0/33"))],
                           [ACL(31, Id("foo", "bar"))], [ACL(31, Id("ip", "10.0.0.0/8"))],
                           [ACL(0, Id("world", "anyone"))], [ACL(31, Id("digest", "a:b:c"))]]):
        env.call("acl-variant-%d" % i, zk.create, b + "/v%d" % i, b"", acl=a)
    c = env.raw()
    env.rcall("raw-auth-digest", c.auth, "digest", b"alice:pw")
    env.rcall("raw-whoami", lambda: (lambda r: rawzk.Reply(r.xid, 0, r.err, sorted(r.value)))(
        c.whoami()))
    env.rcall("raw-auth-unknown", c.auth, "unknownscheme", b"x")
    env.out("closed-after-auth-failure", c.wait_closed(5))
    env.call("children", lambda: sorted(zk.get_children(b)))


@scenario
def extended_listing(env):
    zk = env.kz()
    b = env.base
    c = env.raw()
    zk.create(b + "/a/b/c", makepath=True)
    zk.create(b + "/a/d")
    c.create(b + "/e1", flags=rawzk.EPHEMERAL)
    c.create(b + "/a/e2", flags=rawzk.EPHEMERAL)
    c.create(b + "/a/e-", flags=rawzk.EPHEMERAL_SEQUENTIAL)
    env.rcall("allChildren base", c.get_all_children_number, b)
    env.rcall("allChildren leaf", c.get_all_children_number, b + "/a/b/c")
    env.rcall("allChildren missing", c.get_all_children_number, b + "/missing")
    sorted_rep = lambda r: rawzk.Reply(r.xid, 0, r.err, sorted(r.value) if r.value else r.value)
    env.rcall("ephemerals base", lambda: sorted_rep(c.get_ephemerals(b)))
    env.rcall("ephemerals sub", lambda: sorted_rep(c.get_ephemerals(b + "/a")))
    env.rcall("ephemerals prefix-not-node", lambda: sorted_rep(c.get_ephemerals(b + "/a/e")))
    env.rcall("ephemerals none", lambda: sorted_rep(c.get_ephemerals(b + "/zzz")))
    env.rcall("whoami", lambda: sorted_rep(c.whoami()))
    env.rcall("sync", c.sync, b + "/a")
    env.rcall("sync missing", c.sync, b + "/missing")
    env.rcall("getChildren2", lambda: (lambda r: rawzk.Reply(r.xid, 0, r.err, (
        sorted(r.value[0]), r.value[1])))(c.get_children2(b + "/a")))


@scenario
def containers_and_ttl(env):
    c = env.raw()
    b = env.base
    env.rcall("container", c.create_container, b + "/ct", b"d")
    env.rcall("container-dup", c.create_container, b + "/ct")
    env.rcall("container-missing-parent", c.create_container, b + "/no/ct")
    env.rcall("container-child", c.create, b + "/ct/k")
    env.rcall("container-eph-child", c.create, b + "/ct/e", flags=rawzk.EPHEMERAL)
    env.rcall("container-stat", c.exists, b + "/ct")
    env.rcall("container-unused", c.create_container, b + "/unused")
    for flags in (0, 1, 2, 3, 5, 6, 7):
        env.rcall("op19 flags %d" % flags, c.create, b + "/c19-%d" % flags, flags=flags,
                  opcode=rawzk.OP_CREATECONTAINER)
    env.rcall("ttl", c.create_ttl, b + "/ttl", 600000, b"t")
    env.rcall("ttl-seq", c.create_ttl, b + "/ttls-", 600000,
              flags=rawzk.PERSISTENT_SEQUENTIAL_WITH_TTL)
    env.rcall("ttl-stat", c.exists, b + "/ttl")
    env.rcall("ttl-child", c.create, b + "/ttl/k")
    for ttl in (0, -1, 0xFFFFFFFFFF + 1, 0xFFFFFFFFFF):
        env.rcall("ttl value %d" % ttl, c.create_ttl, b + "/tv%d" % (ttl & 0xff), ttl)
    for flags in (0, 1, 2, 3, 4, 7):
        env.rcall("op21 flags %d" % flags, c.create, b + "/t21-%d" % flags, flags=flags,
                  opcode=rawzk.OP_CREATETTL, ttl=1000)
    for op in (rawzk.OP_CREATE, rawzk.OP_CREATE2):
        for flags in (5, 6):
            env.rcall("op%d flags %d" % (op, flags), c.create, b + "/tf", flags=flags, opcode=op)
    # reaping: delete the container's children, wait until it is gone
    c.delete(b + "/ct/k")
    c.close_session()   # removes ct/e (ephemeral) and closes c
    z = env.raw()
    ok = True
    try:
        wait_until(lambda: z.exists(b + "/ct").err == rawzk.NONODE, timeout=15, interval=0.1,
                   msg="container reaped")
    except AssertionError:
        ok = False
    env.out("container reaped", ok)
    env.rcall("unused container kept", z.exists, b + "/unused")
    z.create_ttl(b + "/short", 300)
    try:
        wait_until(lambda: z.exists(b + "/short").err == rawzk.NONODE, timeout=15,
                   interval=0.1, msg="ttl reaped")
        ok = True
    except AssertionError:
        ok = False
    env.out("ttl reaped", ok)
    env.rcall("long ttl kept", z.exists, b + "/ttl")
    env.rcall("children", lambda: (lambda r: rawzk.Reply(r.xid, 0, r.err, sorted(r.value)))(
        z.get_children(b)))


@scenario
def sessions(env):
    b = env.base
    for t in (1000, 4000, 5000, 40000, 100000):
        c = env.raw(timeout_ms=t)
        env.out("negotiated %d" % t, c.negotiated_timeout)
        env.out("connect-response readOnly", c.connect_read_only)
        c.close()
    c = env.raw(timeout_ms=10000)
    c.create(b + "/e", flags=rawzk.EPHEMERAL)
    sid, pw = c.session_id, c.passwd
    c.close()
    c2 = env.raw(timeout_ms=12000, session_id=sid, passwd=pw)
    env.out("reattach same id", c2.session_id == sid)
    env.out("reattach new timeout", c2.negotiated_timeout)
    env.rcall("reattach sees ephemeral", lambda: (lambda r: rawzk.Reply(
        r.xid, 0, r.err, r.value.ephemeralOwner == sid))(c2.exists(b + "/e")))
    env.rcall("closeSession", c2.close_session)
    env.out("closed after closeSession", c2.wait_closed(5))
    c3 = env.raw(timeout_ms=10000, session_id=sid, passwd=pw)
    env.out("closed session reply", (c3.negotiated_timeout, c3.session_id, c3.passwd))
    env.out("closed session conn closed", c3.wait_closed(5))
    c4 = env.raw(timeout_ms=10000, session_id=0x7123456789, passwd=b"\x00" * 16)
    env.out("unknown session reply", (c4.negotiated_timeout, c4.session_id, c4.passwd))
    z = env.raw()
    env.rcall("ephemeral gone", z.exists, b + "/e")
    env.rcall("ping", z.ping)


@scenario
def four_letter_words(env):
    addr = env.addr
    env.out("ruok", rawzk.four_letter(addr, "ruok"))
    env.out("isro", rawzk.four_letter(addr, "isro"))
    srvr = rawzk.four_letter(addr, "srvr").decode()
    env.out("srvr keys", [l.split(":")[0] for l in srvr.splitlines()])
    env.out("srvr mode", [l for l in srvr.splitlines() if l.startswith("Mode:")])
    stat = rawzk.four_letter(addr, "stat").decode()
    env.out("stat has Clients", "Clients:" in stat)
    mntr = rawzk.four_letter(addr, "mntr").decode()
    keys = set(l.split("\t")[0] for l in mntr.splitlines())
    env.out("mntr classic keys", sorted(keys & {
        "zk_version", "zk_avg_latency", "zk_max_latency", "zk_min_latency",
        "zk_packets_received", "zk_packets_sent", "zk_num_alive_connections",
        "zk_outstanding_requests", "zk_server_state", "zk_znode_count", "zk_watch_count",
        "zk_ephemerals_count", "zk_approximate_data_size"}))
    env.out("wchs shape", rawzk.four_letter(addr, "wchs").decode().count("Total watches:"))
    env.out("dirs shape", [l.split(":")[0] for l in
                           rawzk.four_letter(addr, "dirs").decode().splitlines()])


# ====================================================================== random op sequences

RANDOM_SEEDS = [11, 22, 33, 44, 55, 66, 77, 88, 99, 111]


def _random_scenario(seed, n_ops=250):
    import random

    def run(env):
        rnd = random.Random(seed)
        b = env.base
        names = ["a", "b", "c"]
        paths = [b + "/" + x for x in names]
        paths += [p + "/" + x for p in paths for x in names[:2]]
        paths += [p + "/x" for p in paths[3:6]]
        persistent = {b + "/c": rawzk.AW_PERSISTENT, b + "/b": rawzk.AW_PERSISTENT_RECURSIVE}
        standard_paths = [p for p in paths if p not in persistent]
        acls = [
            rawzk.WORLD_ALL,
            rawzk.WORLD_READ,
            [(rawzk.PERM_READ | rawzk.PERM_WRITE, "world", "anyone")],
            [(rawzk.PERM_READ | rawzk.PERM_CREATE, "world", "anyone")],
            [(rawzk.PERM_READ, "world", "anyone"),
             (rawzk.PERM_ALL, "digest", make_digest_acl_credential("u", "p"))],
            [(rawzk.PERM_ALL, "world", "nobody")],            # invalid
            [],                                               # invalid
            [(rawzk.PERM_ALL, "ip", "127.0.0.1")],
        ]
        datas = [None, b"", b"x", b"hello world", bytes(range(256))]
        c = env.raw()
        w = env.raw()
        for p, mode in persistent.items():
            env.rcall("addWatch %s" % p.replace(b, "$B"), w.add_watch, p, mode)

        def sorted_value(rep):
            if rep is not None and rep.err == 0 and isinstance(rep.value, list):
                rep.value = sorted(rep.value)
            return rep

        def rand_acl(valid_only=False):
            if rnd.random() < 0.7:
                return rawzk.WORLD_ALL
            return rnd.choice(acls[:5] + acls[7:] if valid_only else acls)

        def rand_create_op():
            # prefer shallow paths so that parents exist more often
            p = rnd.choice(paths[:3] * 3 + paths)
            kind = rnd.random()
            if kind < 0.8:
                return rawzk.op_create(p, rnd.choice(datas), rand_acl(valid_only=True),
                                       rnd.choice([0, 0, 0, 1, 2, 3]))
            return rawzk.op_create(p, rnd.choice(datas), rawzk.WORLD_ALL,
                                   rnd.choice([5, 6]), opcode=rawzk.OP_CREATETTL, ttl=600000)

        fence_no = [0]

        def fence_events(label, unordered=False):
            fence_no[0] += 1
            fp = "%s/fence%d" % (b, fence_no[0])
            w.exists(fp, watch=True)
            w.create(fp)
            ev = w.wait_event(lambda e: e.path == fp, timeout=8)
            assert ev is not None, "fence event never arrived"
            evs = [e for e in w.events if e.path != fp]
            w.events.clear()
            if unordered:
                evs = sorted(evs, key=lambda e: (e.type, e.path))
            env.out(label, evs)

        for i in range(n_ops):
            r = rnd.random()
            p = rnd.choice(paths)
            tag = "%d " % i
            if r < 0.30:
                opcode, body = rand_create_op()
                env.rcall(tag + "create", c.request, opcode, body,
                          parse=(lambda rr: rr.ustring()) if opcode == rawzk.OP_CREATE
                          else (lambda rr: (rr.ustring(), rr.stat())))
            elif r < 0.38:
                env.rcall(tag + "delete", c.delete, p, rnd.choice([-1, -1, 0, 1, 2]))
            elif r < 0.47:
                env.rcall(tag + "setData", c.set_data, p, rnd.choice(datas),
                          rnd.choice([-1, -1, 0, 1, 2]))
            elif r < 0.52:
                env.rcall(tag + "getData", c.get_data, p)
            elif r < 0.56:
                env.rcall(tag + "exists", c.exists, p)
            elif r < 0.60:
                env.rcall(tag + "getChildren", lambda: sorted_value(c.get_children(p)))
            elif r < 0.63:
                rep = c.get_children2(p)
                if rep.err == 0:
                    rep.value = (sorted(rep.value[0]), rep.value[1])
                env.out(tag + "getChildren2", (rep.err, rep.value))
            elif r < 0.67:
                env.rcall(tag + "setACL", c.set_acl, p, rand_acl(),
                          rnd.choice([-1, -1, 0, 1]))
            elif r < 0.69:
                env.rcall(tag + "getACL", c.get_acl, p)
            elif r < 0.80:
                ops = []
                for _ in range(rnd.randint(0, 4)):
                    k = rnd.random()
                    q = rnd.choice(paths)
                    if k < 0.35:
                        ops.append(rand_create_op())
                    elif k < 0.55:
                        ops.append(rawzk.op_delete(q, rnd.choice([-1, 0, 1])))
                    elif k < 0.8:
                        ops.append(rawzk.op_set_data(q, rnd.choice(datas),
                                                     rnd.choice([-1, 0, 1])))
                    else:
                        ops.append(rawzk.op_check(q, rnd.choice([-1, 0, 1])))
                env.rcall(tag + "multi", c.multi, ops)
            elif r < 0.83:
                ops = [rnd.choice([rawzk.op_get_data, rawzk.op_get_children])(rnd.choice(paths))
                       for _ in range(rnd.randint(1, 3))]
                rep = c.multi_read(ops)
                if rep.err == 0:
                    for res in rep.value:
                        if res.type == rawzk.OP_GETCHILDREN:
                            res.value = sorted(res.value)
                env.out(tag + "multiRead", (rep.err, rep.value))
            elif r < 0.86:
                env.rcall(tag + "allChildren", c.get_all_children_number, p)
            elif r < 0.88:
                env.rcall(tag + "ephemerals", lambda: sorted_value(c.get_ephemerals(b)))
            elif r < 0.97:
                q = rnd.choice(standard_paths)
                k = rnd.choice(["data", "exists", "children"])
                if k == "data":
                    env.rcall(tag + "watch data", w.get_data, q, True)
                elif k == "exists":
                    env.rcall(tag + "watch exists", w.exists, q, True)
                else:
                    env.rcall(tag + "watch children", lambda: sorted_value(
                        w.get_children(q, True)))
            else:
                env.rcall(tag + "sync", c.sync, p)
            if i % 25 == 24:
                fence_events(tag + "events")
        env.rcall("final allChildren", c.get_all_children_number, b)
        c.close_session()
        # the order in which closeSession deletes several ephemerals is
        # unspecified (a HashSet on the real server): compare as a multiset
        fence_events("events after closeSession (sorted)", unordered=True)
    run.__name__ = "random_%d" % seed
    return run


for _seed in RANDOM_SEEDS:
    SCENARIOS["random_%d" % _seed] = _random_scenario(_seed)


def _random_pipelined_scenario(seed, n_batches=60):
    """Random writes and reads sent in pipelined batches on one connection: each
    request must be validated against the effects of the earlier requests of
    the batch (outstanding changes), and replies come back in order."""
    import random

    def run(env):
        rnd = random.Random(seed)
        b = env.base
        paths = [b + "/" + x for x in "ab"] + [b + "/" + x + "/" + y for x in "ab" for y in "xy"]
        c = env.raw()
        w = env.raw()
        parse_stat = lambda r: r.stat()
        for i in range(n_batches):
            batch = []
            for _ in range(rnd.randint(1, 8)):
                p = rnd.choice(paths)
                k = rnd.random()
                if k < 0.3:
                    flags = rnd.choice([0, 0, 1, 2])
                    batch.append(("create", rawzk.OP_CREATE,
                                  rawzk.op_create(p, b"d", flags=flags)[1], lambda r: r.ustring()))
                elif k < 0.5:
                    batch.append(("delete", rawzk.OP_DELETE,
                                  rawzk.op_delete(p, rnd.choice([-1, 0, 1]))[1], None))
                elif k < 0.7:
                    batch.append(("setData", rawzk.OP_SETDATA, rawzk.op_set_data(
                        p, b"%d" % i, rnd.choice([-1, 0, 1, 2]))[1], parse_stat))
                elif k < 0.8:
                    batch.append(("multi", rawzk.OP_MULTI, rawzk.encode_multi(
                        [rawzk.op_create(p + "/m"), rawzk.op_delete(p + "/m")]),
                        rawzk.decode_multi))
                elif k < 0.9:
                    batch.append(("getData", rawzk.OP_GETDATA, rawzk.W().ustring(p)
                                  .bool(rnd.random() < 0.3).bytes(),
                                  lambda r: (r.buffer(), r.stat())))
                else:
                    batch.append(("getChildren", rawzk.OP_GETCHILDREN,
                                  rawzk.W().ustring(p).bool(False).bytes(),
                                  lambda r: sorted(r.strings())))
            if rnd.random() < 0.3:
                p = rnd.choice(paths)
                w.exists(p, watch=True)
            xids = [c.send_request(op, body) for _, op, body, _ in batch]
            for (label, op, body, parse), x in zip(batch, xids):
                rep = c.read_reply(x)
                if rep.err == 0 and parse is not None:
                    rep.value = parse(rawzk.R(rep.raw))
                env.out("%d %s" % (i, label), (rep.err, rep.value))
        fp = b + "/fence"
        w.exists(fp, watch=True)
        w.create(fp)
        assert w.wait_event(lambda e: e.path == fp, timeout=8) is not None
        env.out("events", [e for e in w.events if e.path != fp])
        env.out("final", sorted(c.get_children(b).value))
    run.__name__ = "pipelined_%d" % seed
    return run


for _seed in (101, 202, 303):
    SCENARIOS["pipelined_%d" % _seed] = _random_pipelined_scenario(_seed)


# ====================================================================== runner

def _run(addr, name, base_name):
    zk = start_kazoo(addr)
    try:
        base = "/" + base_name
        zk.create(base)
    finally:
        stop_kazoo(zk)
    env = Env(addr, base)
    try:
        SCENARIOS[name](env)
    finally:
        env.close()
    return env.rec


def _diff(ref, cand, ref_name, cand_name):
    lines = []
    n = max(len(ref), len(cand))
    for i in range(n):
        a = ref[i] if i < len(ref) else ("<missing>", None)
        b = cand[i] if i < len(cand) else ("<missing>", None)
        if a != b:
            lines.append("step %d %s:\n    %s: %r\n    %s: %r" % (
                i, a[0] if a[0] == b[0] else "%s / %s" % (a[0], b[0]),
                ref_name, a[1], cand_name, b[1]))
    return lines


def _check_reference_sane(rec):
    bad = [r for r in rec if isinstance(r[1], tuple) and r[1] and r[1][0] == "io-error"]
    assert not bad, "reference server transcript has I/O errors (scenario bug?): %r" % bad


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_differential(name, zk_reference, diff_candidate):
    base_name = "diff_" + name
    ref = _run(zk_reference, name, base_name)
    _check_reference_sane(ref)
    cand = _run(diff_candidate, name, base_name)
    d = _diff(ref, cand, "zookeeper", diff_candidate.kind)
    assert not d, "%d differing steps in scenario %s:\n%s" % (len(d), name, "\n".join(d))


# ====================================================================== fresh servers

def fresh_transcript(addr):
    env = Env(addr, "")
    try:
        c = env.raw()
        env.rcall("stat /", c.exists, "/")
        env.rcall("children /", lambda: (lambda r: rawzk.Reply(r.xid, 0, r.err, (
            sorted(r.value[0]), r.value[1])))(c.get_children2("/")))
        env.rcall("stat /zookeeper", c.exists, "/zookeeper")
        env.rcall("children /zookeeper", lambda: (lambda r: rawzk.Reply(r.xid, 0, r.err,
                                                  sorted(r.value)))(c.get_children("/zookeeper")))
        env.rcall("stat /zookeeper/quota", c.exists, "/zookeeper/quota")
        env.rcall("config", c.get_data, "/zookeeper/config")
        env.rcall("acl /", c.get_acl, "/")
        env.rcall("acl /zookeeper", c.get_acl, "/zookeeper")
        env.rcall("acl /zookeeper/config", c.get_acl, "/zookeeper/config")
        env.rcall("get /", c.get_data, "/")
        env.rcall("allChildren /", c.get_all_children_number, "/")
        env.rcall("first seq under /", c.create, "/s-", flags=rawzk.PERSISTENT_SEQUENTIAL)
        env.rcall("second seq under /", c.create, "/s-", flags=rawzk.PERSISTENT_SEQUENTIAL)
        env.rcall("stat / after", c.exists, "/")
        env.rcall("child of /zookeeper", c.create, "/zookeeper/mine")
        env.rcall("delete child of /zookeeper", c.delete, "/zookeeper/mine")
        env.rcall("stat /zookeeper after", c.exists, "/zookeeper")
        env.rcall("seq under /zookeeper/quota", c.create, "/zookeeper/quota/q-",
                  flags=rawzk.PERSISTENT_SEQUENTIAL)
        srvr = rawzk.four_letter(addr, "srvr").decode()
        env.out("srvr node count", [l for l in srvr.splitlines() if l.startswith("Node count")])
    finally:
        env.close()
    return env.rec


@pytest.mark.timeout(120)
def test_differential_fresh_server():
    """Initial tree and counters of a brand-new server (cversion of / is -1,
    first sequential child of / is 0000000000, ...)."""
    from conftest import require
    require("zk")
    cand_kind = "zk" if os.environ.get("ZK_DIFF_CANDIDATE") == "zk" else "corezk"
    require(cand_kind)
    ref_srv = servers.make_server("zk")
    cand_srv = servers.make_server(cand_kind)
    try:
        ref_srv.start()
        try:
            cand_srv.start()
        except servers.ServerStartError as e:
            pytest.fail(str(e), pytrace=False)
        ref = fresh_transcript(ref_srv.addr)
        _check_reference_sane(ref)
        cand = fresh_transcript(cand_srv.addr)
    finally:
        ref_srv.stop()
        cand_srv.stop()
    d = _diff(ref, cand, "zookeeper", cand_kind)
    assert not d, "%d differing steps on a fresh server:\n%s" % (len(d), "\n".join(d))
