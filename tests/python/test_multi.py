"""Transactions (multi) through kazoo and raw multi/multiRead."""

import pytest
from kazoo.exceptions import (
    BadVersionError, NoNodeError, NodeExistsError, NotEmptyError, RolledBackError,
    RuntimeInconsistency, NoChildrenForEphemeralsError,
)
from kazoo.protocol.states import ZnodeStat

import rawzk


def test_transaction_success(zk, base):
    zk.create(base + "/old", b"o")
    zk.create(base + "/chk", b"c")
    t = zk.transaction()
    t.create(base + "/new", b"n")
    t.create(base + "/new/child", b"nc")
    t.set_data(base + "/old", b"o2")
    t.delete(base + "/chk")
    t.check(base + "/old", 1)   # sees the set_data above
    res = t.commit()
    assert res[0] == base + "/new"
    assert res[1] == base + "/new/child"
    assert isinstance(res[2], ZnodeStat) and res[2].version == 1
    assert res[3] is True and res[4] is True
    assert zk.get(base + "/new/child")[0] == b"nc"
    assert zk.get(base + "/old")[0] == b"o2"
    assert zk.exists(base + "/chk") is None
    # all created in one txn: same czxid
    assert zk.exists(base + "/new").czxid == zk.exists(base + "/new/child").czxid


def test_transaction_failure_rolls_back(zk, base):
    zk.create(base + "/a", b"a")
    t = zk.transaction()
    t.create(base + "/b", b"b")
    t.set_data(base + "/a", b"changed")
    t.check(base + "/a", 5)        # fails: version is 1 after the set above
    t.delete(base + "/a")
    res = t.commit()
    assert [type(r) for r in res] == [RolledBackError, RolledBackError, BadVersionError,
                                      RuntimeInconsistency]
    assert zk.exists(base + "/b") is None
    data, st = zk.get(base + "/a")
    assert data == b"a" and st.version == 0
    assert zk.get_children(base) == ["a"]


@pytest.mark.parametrize("case", ["nonode", "exists", "notempty", "ephparent", "badversion"])
def test_transaction_failure_codes(zk, base, case):
    zk.create(base + "/p/c", makepath=True)
    eph = zk.create(base + "/eph", ephemeral=True)
    t = zk.transaction()
    t.create(base + "/first")
    expected = {
        "nonode": (lambda: t.delete(base + "/missing"), NoNodeError),
        "exists": (lambda: t.create(base + "/p"), NodeExistsError),
        "notempty": (lambda: t.delete(base + "/p"), NotEmptyError),
        "ephparent": (lambda: t.create(eph + "/x"), NoChildrenForEphemeralsError),
        "badversion": (lambda: t.set_data(base + "/p", b"", version=3), BadVersionError),
    }[case]
    expected[0]()
    t.create(base + "/last")
    res = t.commit()
    assert [type(r) for r in res] == [RolledBackError, expected[1], RuntimeInconsistency]
    assert sorted(zk.get_children(base)) == ["eph", "p"]


def test_transaction_sequential_in_multi(zk, base):
    t = zk.transaction()
    t.create(base + "/s-", sequence=True)
    t.create(base + "/s-", sequence=True)
    t.create(base + "/x")
    t.create(base + "/s-", sequence=True)
    res = t.commit()
    assert res == [base + "/s-0000000000", base + "/s-0000000001", base + "/x",
                   base + "/s-0000000003"]


def test_transaction_delete_then_recreate(zk, base):
    zk.create(base + "/n", b"1")
    t = zk.transaction()
    t.delete(base + "/n")
    t.create(base + "/n", b"2")
    res = t.commit()
    assert res == [True, base + "/n"]
    assert zk.get(base + "/n")[0] == b"2"


def test_empty_transaction(zk):
    assert zk.transaction().commit() == []


def test_transaction_context_manager(zk, base):
    with zk.transaction() as t:
        t.create(base + "/cm", b"x")
    assert zk.get(base + "/cm")[0] == b"x"
    assert t.committed


def test_raw_multi_results(raw, base):
    c = raw()
    rep = c.multi([
        rawzk.op_create(base + "/a", b"1"),
        rawzk.op_set_data(base + "/a", b"2"),
        rawzk.op_check(base + "/a", 1),
        rawzk.op_create(base + "/b", b""),
        rawzk.op_delete(base + "/b"),
    ])
    assert rep.err == 0
    types = [(r.type, r.err) for r in rep.value]
    assert types == [(rawzk.OP_CREATE, 0), (rawzk.OP_SETDATA, 0), (rawzk.OP_CHECK, 0),
                     (rawzk.OP_CREATE, 0), (rawzk.OP_DELETE, 0)]
    assert rep.value[0].value == base + "/a"
    assert rep.value[1].value.version == 1
    # failing multi: earlier ops 0, failing op its code, later ops -2
    rep = c.multi([
        rawzk.op_create(base + "/c"),
        rawzk.op_delete(base + "/zzz"),
        rawzk.op_create(base + "/d"),
        rawzk.op_set_data(base + "/a", b"x"),
    ])
    assert rep.err == 0
    assert [(r.type, r.err) for r in rep.value] == [
        (-1, 0), (-1, rawzk.NONODE), (-1, rawzk.RUNTIMEINCONSISTENCY),
        (-1, rawzk.RUNTIMEINCONSISTENCY)]
    assert sorted(c.get_children(base).value) == ["a"]


def test_raw_multi_create2_has_stat_when_container(raw, base):
    # createContainer inside multi answers type 15 with a Stat on every version
    c = raw()
    rep = c.multi([rawzk.op_create(base + "/ct", b"", flags=rawzk.CONTAINER,
                                   opcode=rawzk.OP_CREATECONTAINER)])
    assert rep.err == 0
    (r,) = rep.value
    assert r.type == rawzk.OP_CREATE2 and r.err == 0
    path, st = r.value
    assert path == base + "/ct" and st.ephemeralOwner == 0


def test_raw_multi_read(raw, zk, base):
    from kazoo.security import make_digest_acl
    zk.create(base + "/a", b"A")
    zk.create(base + "/a/k1")
    zk.create(base + "/noread", b"", acl=[make_digest_acl("u", "p", all=True)])
    c = raw()
    rep = c.multi_read([
        rawzk.op_get_data(base + "/a"),
        rawzk.op_get_children(base + "/a"),
        rawzk.op_get_data(base + "/missing"),
        rawzk.op_get_children(base + "/missing"),
        rawzk.op_get_data(base + "/noread"),
        rawzk.op_get_children(base),
    ])
    assert rep.err == 0
    r = rep.value
    assert (r[0].type, r[0].err) == (rawzk.OP_GETDATA, 0)
    assert r[0].value[0] == b"A" and r[0].value[1].numChildren == 1
    assert (r[1].type, r[1].value) == (rawzk.OP_GETCHILDREN, ["k1"])
    assert (r[2].type, r[2].err) == (-1, rawzk.NONODE)
    assert (r[3].type, r[3].err) == (-1, rawzk.NONODE)
    assert (r[4].type, r[4].err) == (-1, rawzk.NOAUTH)
    assert r[5].type == rawzk.OP_GETCHILDREN and sorted(r[5].value) == ["a", "noread"]


def test_raw_multi_mixed_kinds_rejected(raw, base):
    c = raw()
    rep = c.multi([rawzk.op_create(base + "/x"), rawzk.op_get_data(base)])
    assert rep.err == rawzk.MARSHALLINGERROR
    assert c.exists(base + "/x").err == rawzk.NONODE
    rep = c.multi_read([rawzk.op_get_data(base), rawzk.op_create(base + "/y")])
    assert rep.err == rawzk.MARSHALLINGERROR
    assert c.exists(base + "/y").err == rawzk.NONODE


def test_raw_multi_bad_create_flags(raw, base):
    c = raw()
    # Invalid flags are that op's BadArguments (ZooKeeper 3.8): OK before it,
    # RuntimeInconsistency after it, nothing applied.
    for flags in (7, -1, 1 << 20):
        rep = c.multi([rawzk.op_create(base + "/w"), rawzk.op_create(base + "/x", flags=flags),
                       rawzk.op_create(base + "/y")])
        assert rep.err == 0
        assert [(r.type, r.err) for r in rep.value] == [
            (-1, 0), (-1, rawzk.BADARGUMENTS), (-1, rawzk.RUNTIMEINCONSISTENCY)]
        for p in ("/w", "/x", "/y"):
            assert c.exists(base + p).err == rawzk.NONODE


def test_raw_multi_create_result_follows_flags(raw, base):
    # ZooKeeper rebuilds a create sub-op from its flags: flags 0-3 answer type create
    # (path only) whatever the op code, flags 4 a container with type create2 (path and
    # Stat); a createTTL sub-op whose flags are no TTL mode ignores its TTL.
    c = raw()
    ops = [rawzk.op_create(base + "/p1", opcode=rawzk.OP_CREATE2),
           rawzk.op_create(base + "/p2", opcode=rawzk.OP_CREATECONTAINER),
           rawzk.op_create(base + "/c1", flags=4),
           rawzk.op_create(base + "/t1", flags=0, opcode=rawzk.OP_CREATETTL, ttl=0),
           rawzk.op_create(base + "/t2", flags=5, opcode=rawzk.OP_CREATETTL, ttl=60000)]
    rep = c.multi(ops)
    assert rep.err == 0
    assert [r.type for r in rep.value] == [rawzk.OP_CREATE, rawzk.OP_CREATE, rawzk.OP_CREATE2,
                                           rawzk.OP_CREATE, rawzk.OP_CREATE2]
    assert rep.value[0].value == base + "/p1"
    assert rep.value[2].value[0] == base + "/c1"
    assert c.exists(base + "/t1").err == 0
