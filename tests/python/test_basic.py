"""Core znode operations through kazoo (and a few raw checks)."""

import pytest
from kazoo.exceptions import (
    BadArgumentsError, BadVersionError, NoAuthError, NoChildrenForEphemeralsError,
    NodeExistsError, NoNodeError, NotEmptyError,
)

import rawzk
from conftest import start_kazoo, stop_kazoo
from helpers import wait_until


# ---------------------------------------------------------------- create

def test_create_persistent(zk, base):
    p = zk.create(base + "/a", b"hello")
    assert p == base + "/a"
    data, st = zk.get(p)
    assert data == b"hello"
    assert st.version == 0 and st.cversion == 0 and st.aversion == 0
    assert st.ephemeralOwner == 0
    assert st.dataLength == 5 and st.numChildren == 0
    assert st.czxid == st.mzxid == st.pzxid > 0
    assert st.ctime == st.mtime > 0
    with pytest.raises(NodeExistsError):
        zk.create(p, b"again")
    assert zk.get(p)[0] == b"hello"


def test_create_include_data(zk, base):
    p, st = zk.create(base + "/inc", b"abc", include_data=True)
    assert p == base + "/inc"
    assert st.czxid == st.mzxid == st.pzxid
    assert st.version == 0 and st.dataLength == 3 and st.numChildren == 0
    assert zk.exists(p) == st


def test_create_ephemeral(zk, kz, base):
    other = kz()
    p = other.create(base + "/eph", b"e", ephemeral=True)
    st = zk.exists(p)
    assert st.ephemeralOwner == other.client_id[0] != 0
    with pytest.raises(NoChildrenForEphemeralsError):
        other.create(p + "/child")
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create(p + "/child", ephemeral=True)
    # NodeExists wins over NoChildrenForEphemerals only for the node itself
    with pytest.raises(NodeExistsError):
        zk.create(p)
    other.stop()  # closeSession: ephemerals go away synchronously
    assert zk.exists(p) is None


def test_create_sequential_numbering(zk, base):
    a = zk.create(base + "/s-", b"", sequence=True)
    b = zk.create(base + "/s-", b"", sequence=True)
    assert a == base + "/s-0000000000"
    assert b == base + "/s-0000000001"
    zk.create(base + "/plain")
    c = zk.create(base + "/q", sequence=True)
    assert c == base + "/q0000000003"  # counter = children ever created
    zk.delete(a)
    d = zk.create(base + "/s-", sequence=True)
    assert d == base + "/s-0000000004"  # deletes never make numbers reusable
    # a trailing slash is allowed for sequential creates
    sub = zk.create(base + "/dir")
    e = zk.create(sub + "/", sequence=True)
    assert e == sub + "/0000000000"


def test_create_ephemeral_sequential(zk, kz, base):
    other = kz()
    p1 = other.create(base + "/lock-", b"x", ephemeral=True, sequence=True)
    p2 = other.create(base + "/lock-", b"y", ephemeral=True, sequence=True)
    assert p1 == base + "/lock-0000000000"
    assert p2 == base + "/lock-0000000001"
    assert zk.exists(p1).ephemeralOwner == other.client_id[0]
    other.stop()
    assert zk.get_children(base) == []


def test_create_makepath(zk, base):
    p = zk.create(base + "/x/y/z", b"deep", makepath=True)
    assert p == base + "/x/y/z"
    assert zk.get(base + "/x")[0] == b""
    assert zk.get_children(base + "/x") == ["y"]
    assert zk.get(p)[0] == b"deep"
    with pytest.raises(NoNodeError):
        zk.create(base + "/m/n", b"")
    zk.ensure_path(base + "/m/n/o")
    assert zk.exists(base + "/m/n/o") is not None


def test_create_missing_parent(zk, base):
    with pytest.raises(NoNodeError):
        zk.create(base + "/nope/child")
    with pytest.raises(NoNodeError):
        zk.create(base + "/nope/child", sequence=True)


# ---------------------------------------------------------------- get / set

def test_get_set_versions(zk, base):
    p = zk.create(base + "/v", b"0")
    st0 = zk.exists(p)
    st1 = zk.set(p, b"1")
    assert st1.version == 1
    assert st1.czxid == st0.czxid
    assert st1.mzxid > st0.mzxid
    assert st1.mtime >= st0.mtime
    assert st1.pzxid == st0.pzxid
    with pytest.raises(BadVersionError):
        zk.set(p, b"bad", version=0)
    assert zk.get(p)[0] == b"1"
    st2 = zk.set(p, b"2", version=1)
    assert st2.version == 2
    st3 = zk.set(p, b"2", version=-1)  # unconditional; same data still bumps
    assert st3.version == 3
    data, st = zk.get(p)
    assert data == b"2" and st == st3
    with pytest.raises(NoNodeError):
        zk.set(base + "/missing", b"x")
    with pytest.raises(NoNodeError):
        zk.get(base + "/missing")


def test_null_vs_empty_data(zk, base):
    pn = zk.create(base + "/null", None)
    pe = zk.create(base + "/empty", b"")
    dn, sn = zk.get(pn)
    de, se = zk.get(pe)
    assert dn is None
    assert de == b""
    assert sn.dataLength == 0 and se.dataLength == 0
    zk.set(pe, None)
    assert zk.get(pe)[0] is None
    zk.set(pn, b"")
    assert zk.get(pn)[0] == b""


def test_binary_and_large_data(zk, base):
    blob = bytes(range(256)) * 1000  # 256 000 bytes
    p = zk.create(base + "/blob", blob)
    data, st = zk.get(p)
    assert data == blob and st.dataLength == len(blob)
    big = b"\xab" * (1000 * 1000)  # just under jute.maxbuffer with headers
    zk.set(p, big)
    assert zk.get(p)[0] == big


# ---------------------------------------------------------------- delete / exists

def test_delete_version(zk, base):
    p = zk.create(base + "/d", b"")
    zk.set(p, b"x")
    with pytest.raises(BadVersionError):
        zk.delete(p, version=0)
    assert zk.exists(p) is not None
    zk.delete(p, version=1)
    assert zk.exists(p) is None
    with pytest.raises(NoNodeError):
        zk.delete(p)


def test_delete_not_empty_and_recursive(zk, base):
    zk.create(base + "/r/a/b", makepath=True)
    zk.create(base + "/r/c")
    with pytest.raises(NotEmptyError):
        zk.delete(base + "/r")
    zk.delete(base + "/r", recursive=True)
    assert zk.exists(base + "/r") is None
    assert zk.get_children(base) == []


def test_exists(zk, base):
    assert zk.exists(base + "/none") is None
    p = zk.create(base + "/e", b"12")
    st = zk.exists(p)
    assert st is not None and st.dataLength == 2


# ---------------------------------------------------------------- children

def test_get_children(zk, base):
    names = ["c%d" % i for i in range(20)]
    for n in names:
        zk.create(base + "/" + n, n.encode())
    assert sorted(zk.get_children(base)) == sorted(names)
    children, st = zk.get_children(base, include_data=True)
    assert sorted(children) == sorted(names)
    assert st.numChildren == 20
    assert st.cversion == 20
    with pytest.raises(NoNodeError):
        zk.get_children(base + "/missing")
    assert zk.get_children(base + "/c0") == []


def test_root_children_include_zookeeper(zk, base):
    assert "zookeeper" in zk.get_children("/")
    assert base.lstrip("/") in zk.get_children("/")
    assert sorted(zk.get_children("/zookeeper")) == ["config", "quota"]


# ---------------------------------------------------------------- Stat relations

def test_stat_parent_relations(zk, base):
    p0 = zk.exists(base)
    c1 = zk.create(base + "/c1")
    s_c1 = zk.exists(c1)
    p1 = zk.exists(base)
    assert p1.cversion == p0.cversion + 1
    assert p1.numChildren == p0.numChildren + 1
    assert p1.pzxid == s_c1.czxid
    assert p1.mzxid == p0.mzxid and p1.version == p0.version  # parent data untouched
    zk.create(base + "/c2")
    zk.delete(c1)
    p2 = zk.exists(base)
    assert p2.cversion == p1.cversion + 2      # create + delete both count
    assert p2.numChildren == 1
    assert p2.pzxid > p1.pzxid
    assert p2.mzxid == p0.mzxid
    # setData on a child does not touch the parent
    zk.set(base + "/c2", b"x")
    assert zk.exists(base) == p2


def test_stat_acl_version(zk, base):
    from kazoo.security import OPEN_ACL_UNSAFE
    p = zk.create(base + "/a", b"d")
    st0 = zk.exists(p)
    st1 = zk.set_acls(p, OPEN_ACL_UNSAFE)
    assert st1.aversion == 1
    assert st1.mzxid == st0.mzxid     # setACL does not change mzxid
    assert st1.version == 0
    assert zk.get_acls(p)[1].aversion == 1


def test_ephemeral_owner_and_counts(zk, base):
    p = zk.create(base + "/e", b"abc", ephemeral=True)
    st = zk.exists(p)
    assert st.ephemeralOwner == zk.client_id[0]
    assert st.dataLength == 3 and st.numChildren == 0


def test_multi_creates_share_zxid(zk, base):
    t = zk.transaction()
    t.create(base + "/m1")
    t.create(base + "/m2")
    t.commit()
    s1, s2 = zk.exists(base + "/m1"), zk.exists(base + "/m2")
    assert s1.czxid == s2.czxid
    assert s1.ctime == s2.ctime


# ---------------------------------------------------------------- special nodes

def test_special_nodes(zk):
    for p in ("/zookeeper", "/zookeeper/quota", "/zookeeper/config"):
        assert zk.exists(p) is not None
        with pytest.raises(BadArgumentsError):
            zk.delete(p)
    with pytest.raises(BadArgumentsError):
        zk.delete("/")
    with pytest.raises(NodeExistsError):
        zk.create("/zookeeper")
    with pytest.raises(NodeExistsError):
        zk.create("/")
    with pytest.raises(NoAuthError):
        zk.set("/zookeeper/config", b"x")
    acl, st = zk.get_acls("/zookeeper/config")
    assert [(a.perms, a.id.scheme, a.id.id) for a in acl] == [(1, "world", "anyone")]
    root_data, root_st = zk.get("/")
    assert root_data == b""
    assert root_st.czxid == 0


# ---------------------------------------------------------------- invalid paths

@pytest.mark.parametrize("bad", ["/a\x01b", "/a\x7fb", "/a\u0085b", "/a\ue000b", "/a\ufff0b"])
def test_invalid_path_chars(zk, base, bad):
    with pytest.raises(BadArgumentsError):
        zk.create(base + bad)
    assert zk.get_children(base) == []


@pytest.mark.parametrize("path,expected", [
    ("noslash", rawzk.BADARGUMENTS),
    ("{base}/", rawzk.BADARGUMENTS),        # parent exists, then validatePath fails
    ("{base}/.", rawzk.BADARGUMENTS),
    ("{base}/..", rawzk.BADARGUMENTS),
    ("{base}/a\x00b", rawzk.BADARGUMENTS),
    ("{base}//x", rawzk.NONODE),            # parent "{base}/" is looked up first
    ("{base}/missing/", rawzk.NONODE),
    ("", rawzk.BADARGUMENTS),
])
def test_invalid_path_create_raw(raw, base, path, expected):
    c = raw()
    rep = c.create(path.format(base=base))
    assert rep.err == expected
    assert c.get_children(base).value == []
    # connection stays usable
    assert c.exists(base).err == 0


def test_invalid_path_other_ops_raw(raw, base):
    c = raw()
    assert c.set_data("noslash", b"x").err == rawzk.BADARGUMENTS
    assert c.set_data(base + "/", b"x").err == rawzk.BADARGUMENTS
    assert c.set_acl(base + "/", rawzk.WORLD_ALL).err == rawzk.BADARGUMENTS
    assert c.exists(base + "/a\x00").err == rawzk.BADARGUMENTS
    assert c.delete("noslash").err == rawzk.BADARGUMENTS
    assert c.delete(base + "/").err == rawzk.NONODE          # delete does no full validation
    assert c.get_data(base + "/nonexistent/").err == rawzk.NONODE
    assert c.get_data(base + "/..").err == rawzk.NONODE


def test_sequential_path_with_trailing_slash_raw(raw, base):
    c = raw()
    rep = c.create(base + "/", flags=rawzk.PERSISTENT_SEQUENTIAL)
    assert rep.err == 0
    assert rep.value == base + "/0000000000"


# ---------------------------------------------------------------- misc

def test_sync(zk, base):
    assert zk.sync(base) == base
    assert zk.sync("/") == "/"


def test_server_version_and_ruok(zk):
    assert zk.command(b"ruok") == "imok"
    v = zk.server_version()
    assert isinstance(v, tuple) and len(v) >= 2 and v[0] >= 3


def test_four_letter_words(server):
    assert rawzk.four_letter(server, "ruok") == b"imok"
    srvr = rawzk.four_letter(server, "srvr").decode()
    assert srvr.startswith("Zookeeper version: ")
    assert "Mode: standalone" in srvr
    assert "Node count: " in srvr
    assert rawzk.four_letter(server, "isro") == b"rw"
    mntr = rawzk.four_letter(server, "mntr").decode()
    keys = dict(line.split("\t", 1) for line in mntr.splitlines() if "\t" in line)
    assert mntr.startswith("zk_version\t")
    assert keys.get("zk_server_state") == "standalone"
    for k in ("zk_avg_latency", "zk_znode_count", "zk_num_alive_connections"):
        assert k in keys
    conf = rawzk.four_letter(server, "conf").decode()
    assert "clientPort=%s" % server.rsplit(":", 1)[1] in conf
    envi = rawzk.four_letter(server, "envi").decode()
    assert envi.startswith("Environment:")
    assert "zookeeper.version=" in envi


def test_znode_count_tracks_creates(fresh_server):
    # a fresh server: on a shared one, sessions abandoned by earlier tests may
    # expire (and delete their ephemerals) at any moment
    zk = start_kazoo(fresh_server)
    try:
        def count():
            srvr = rawzk.four_letter(fresh_server, "srvr").decode()
            return int(srvr.split("Node count: ")[1].split()[0])
        assert count() == 5     # "", "/", /zookeeper, /zookeeper/quota, /zookeeper/config
        zk.create("/base")
        for i in range(5):
            zk.create("/base/n%d" % i)
        assert count() == 11
        zk.delete("/base", recursive=True)
        assert count() == 5
    finally:
        stop_kazoo(zk)


def test_many_sessions(kz, base, zk):
    clients = [kz() for _ in range(8)]
    for i, c in enumerate(clients):
        c.create("%s/e%d" % (base, i), ephemeral=True)
    assert len(zk.get_children(base)) == 8
    ids = {c.client_id[0] for c in clients}
    assert len(ids) == 8
    for c in clients:
        c.stop()
    wait_until(lambda: zk.get_children(base) == [], timeout=5, msg="ephemerals gone")


def _parse_grouped(text):
    """wchc / wchp format: a key line, then tab-indented value lines."""
    out, key = {}, None
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("\t"):
            out.setdefault(key, set()).add(line[1:])
        else:
            key = line
            out.setdefault(key, set())
    return out


def test_watch_and_count_stats(fresh_server):
    """wchs / wchc / wchp / mntr counters on a fresh server (only the data
    watch table is listed; zk_watch_count counts data + child watches)."""
    a = rawzk.connect(fresh_server)
    b = rawzk.connect(fresh_server)
    try:
        assert a.create("/a").err == 0
        assert a.create("/e", flags=rawzk.EPHEMERAL).err == 0
        a.get_data("/a", watch=True)
        a.exists("/nope", watch=True)
        a.get_children("/", watch=True)
        b.exists("/nope", watch=True)
        sa, sb = "0x%x" % a.session_id, "0x%x" % b.session_id
        assert rawzk.four_letter(fresh_server, "wchs").decode() == \
            "2 connections watching 2 paths\nTotal watches:3\n"
        assert _parse_grouped(rawzk.four_letter(fresh_server, "wchc").decode()) == \
            {sa: {"/a", "/nope"}, sb: {"/nope"}}
        assert _parse_grouped(rawzk.four_letter(fresh_server, "wchp").decode()) == \
            {"/a": {sa}, "/nope": {sa, sb}}
        mntr = rawzk.four_letter(fresh_server, "mntr").decode()
        keys = dict(l.split("\t", 1) for l in mntr.splitlines() if "\t" in l)
        assert keys["zk_watch_count"] == "4"
        assert keys["zk_ephemerals_count"] == "1"
        assert keys["zk_znode_count"] == "7"
        dump = rawzk.four_letter(fresh_server, "dump").decode()
        assert "Sessions with Ephemerals (1):" in dump
        assert "%s:\n\t/e" % sa in dump
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(120)
def test_many_children_and_big_multi(zk, base):
    n = 5000
    futures = [zk.create_async("%s/c%05d" % (base, i), b"") for i in range(n)]
    for f in futures:
        f.get(timeout=60)
    children = zk.get_children(base)
    assert len(children) == n and len(set(children)) == n
    st = zk.exists(base)
    assert st.numChildren == n and st.cversion == n
    t = zk.transaction()
    for i in range(1000):
        t.delete("%s/c%05d" % (base, i))
    res = t.commit()
    assert res == [True] * 1000
    assert zk.exists(base).numChildren == n - 1000
    futures = [zk.delete_async("%s/c%05d" % (base, i)) for i in range(1000, n)]
    for f in futures:
        f.get(timeout=60)
    assert zk.exists(base).numChildren == 0
    assert zk.exists(base).cversion == 2 * n


def test_many_watchers_same_node(raw, zk, base):
    p = zk.create(base + "/hot", b"")
    conns = [raw() for _ in range(40)]
    for c in conns:
        assert c.get_data(p, watch=True).err == 0
    zk.set(p, b"x")
    for c in conns:
        ev = c.wait_event(timeout=10)
        assert ev is not None and (ev.type, ev.path) == (rawzk.EV_NODE_DATA_CHANGED, p)
