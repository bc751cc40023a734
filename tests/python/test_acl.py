"""ACLs and authentication through kazoo (and raw for auth failures)."""

import pytest
from kazoo.exceptions import (
    BadVersionError, InvalidACLError, NoAuthError, NoNodeError,
)
from kazoo.security import (
    ACL, Id, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, Permissions, make_acl,
    make_digest_acl, make_digest_acl_credential,
)

import rawzk


def acl_tuples(acls):
    return sorted((a.perms, a.id.scheme, a.id.id) for a in acls)


def test_digest_credential_vectors():
    # the server-side derivation must match these (doc §9.4)
    assert make_digest_acl_credential("user", "password") == "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY="
    assert make_digest_acl_credential("super", "test") == "super:D/InIHSb7yEEbrWz8b9l71RjZJU="


def test_digest_auth(zk, kz, base):
    acl = make_digest_acl("alice", "secret", all=True)
    p = zk.create(base + "/priv", b"data", acl=[acl])
    # unauthenticated: every permission denied
    with pytest.raises(NoAuthError):
        zk.get(p)
    with pytest.raises(NoAuthError):
        zk.set(p, b"x")
    with pytest.raises(NoAuthError):
        zk.get_children(p)
    with pytest.raises(NoAuthError):
        zk.create(p + "/c")
    # exists on an existing node without READ: 3.8.0 answers with the Stat, later
    # releases (3.8.4+/3.9) answer NoAuth; both are accepted.
    try:
        zk.exists(p)
    except NoAuthError:
        pass
    with pytest.raises(NoAuthError):
        zk.set_acls(p, OPEN_ACL_UNSAFE)
    # wrong password
    bob = kz(auth_data=[("digest", "alice:wrong")])
    with pytest.raises(NoAuthError):
        bob.get(p)
    # right password, via add_auth on a live session
    alice = kz()
    alice.add_auth("digest", "alice:secret")
    assert alice.get(p)[0] == b"data"
    alice.set(p, b"new")
    alice.create(p + "/c", b"")
    assert alice.get_children(p) == ["c"]
    assert alice.get(p)[0] == b"new"
    # delete needs DELETE on the parent (which is open): the unauthenticated client may delete
    # /priv/c? No: parent /priv is protected.
    with pytest.raises(NoAuthError):
        zk.delete(p + "/c")
    alice.delete(p + "/c")
    # deleting /priv itself needs DELETE on base (open)
    zk.delete(p)
    assert zk.exists(p) is None


def test_auth_data_at_connect(kz, zk, base):
    acl = make_digest_acl("carol", "pw", read=True)
    p = zk.create(base + "/n", b"v", acl=[acl])
    carol = kz(auth_data=[("digest", "carol:pw")])
    assert carol.get(p)[0] == b"v"
    with pytest.raises(NoAuthError):
        carol.set(p, b"w")      # only READ granted


def test_world_read_only(zk, base):
    p = zk.create(base + "/ro", b"r", acl=READ_ACL_UNSAFE)
    assert zk.get(p)[0] == b"r"
    assert zk.exists(p) is not None
    assert zk.get_children(p) == []
    with pytest.raises(NoAuthError):
        zk.set(p, b"w")
    with pytest.raises(NoAuthError):
        zk.create(p + "/child")
    with pytest.raises(NoAuthError):
        zk.set_acls(p, OPEN_ACL_UNSAFE)
    acl, st = zk.get_acls(p)
    assert acl_tuples(acl) == [(Permissions.READ, "world", "anyone")]
    zk.delete(p)  # needs DELETE on the parent only


def test_get_acl_masks_digest_without_admin(zk, kz, base):
    digest = make_digest_acl("dave", "pw", all=True)
    p = zk.create(base + "/m", b"", acl=[digest, make_acl("world", "anyone", read=True)])
    acl, st = zk.get_acls(p)   # READ but not ADMIN: digest id masked
    assert acl_tuples(acl) == sorted([(Permissions.ALL, "digest", "dave:x"),
                                     (Permissions.READ, "world", "anyone")])
    dave = kz(auth_data=[("digest", "dave:pw")])
    acl, st = dave.get_acls(p)
    assert acl_tuples(acl) == sorted([(Permissions.ALL, "digest", digest.id.id),
                                     (Permissions.READ, "world", "anyone")])
    # no READ and no ADMIN -> NoAuth
    q = zk.create(base + "/q", b"", acl=[make_digest_acl("dave", "pw", all=True)])
    with pytest.raises(NoAuthError):
        zk.get_acls(q)
    # ADMIN alone is enough for getACL
    r = zk.create(base + "/r", b"", acl=[make_acl("world", "anyone", admin=True)])
    acl, _ = zk.get_acls(r)
    assert acl_tuples(acl) == [(Permissions.ADMIN, "world", "anyone")]


def test_set_acl_versions(zk, base):
    p = zk.create(base + "/a", b"")
    st = zk.set_acls(p, READ_ACL_UNSAFE + [make_acl("world", "anyone", admin=True)], version=0)
    assert st.aversion == 1
    with pytest.raises(BadVersionError):
        zk.set_acls(p, OPEN_ACL_UNSAFE, version=0)
    st = zk.set_acls(p, OPEN_ACL_UNSAFE, version=1)
    assert st.aversion == 2 and st.version == 0
    st = zk.set_acls(p, OPEN_ACL_UNSAFE, version=-1)
    assert st.aversion == 3
    with pytest.raises(NoNodeError):
        zk.set_acls(base + "/missing", OPEN_ACL_UNSAFE)


def test_set_acl_needs_admin(zk, base):
    p = zk.create(base + "/a", b"", acl=[make_acl("world", "anyone", read=True, write=True)])
    zk.set(p, b"ok")
    with pytest.raises(NoAuthError):
        zk.set_acls(p, OPEN_ACL_UNSAFE)


def test_super_user_bypasses(zk, kz, base):
    p = zk.create(base + "/locked", b"s", acl=[make_digest_acl("eve", "pw", all=True)])
    zk.create(base + "/none", b"", acl=[make_digest_acl("eve", "pw", read=True)])
    su = kz(auth_data=[("digest", "super:test")])
    assert su.get(p)[0] == b"s"
    su.set(p, b"t")
    su.create(p + "/kid", b"")
    assert su.get_children(p) == ["kid"]
    acl, _ = su.get_acls(p)
    assert acl[0].id.id != "eve:x"  # super has ADMIN: not masked
    su.delete(p + "/kid")
    su.set_acls(p, OPEN_ACL_UNSAFE)
    assert zk.get(p)[0] == b"t"
    # a wrong super password is just an ordinary digest id
    notsu = kz(auth_data=[("digest", "super:wrong")])
    with pytest.raises(NoAuthError):
        notsu.get(base + "/none")


def test_auth_scheme_acl(zk, kz, base):
    # 'auth' scheme needs an authenticated id, else InvalidACL
    with pytest.raises(InvalidACLError):
        zk.create(base + "/x", b"", acl=[ACL(Permissions.ALL, Id("auth", ""))])
    frank = kz(auth_data=[("digest", "frank:pw")])
    p = frank.create(base + "/y", b"", acl=[ACL(Permissions.ALL, Id("auth", ""))])
    acl, _ = frank.get_acls(p)
    assert acl_tuples(acl) == [(Permissions.ALL, "digest",
                                make_digest_acl_credential("frank", "pw"))]
    with pytest.raises(NoAuthError):
        zk.get(p)


@pytest.mark.parametrize("acl", [
    [ACL(Permissions.ALL, Id("world", "nobody"))],
    [ACL(Permissions.ALL, Id("bogus", "x"))],
    [ACL(Permissions.ALL, Id("digest", "nocolon"))],
    [ACL(Permissions.ALL, Id("ip", "not-an-ip"))],
    [ACL(Permissions.ALL, Id("super", ""))],
])
def test_invalid_acl(zk, base, acl):
    with pytest.raises(InvalidACLError):
        zk.create(base + "/bad", b"", acl=acl)
    assert zk.exists(base + "/bad") is None
    p = zk.create(base + "/good", b"")
    with pytest.raises(InvalidACLError):
        zk.set_acls(p, acl)
    assert acl_tuples(zk.get_acls(p)[0]) == [(Permissions.ALL, "world", "anyone")]


def test_empty_and_null_acl_raw(raw, base):
    # kazoo replaces an empty list by OPEN_ACL_UNSAFE, so send it raw
    c = raw()
    assert c.create(base + "/e", acl=[]).err == rawzk.INVALIDACL
    assert c.create(base + "/n", acl=None).err == rawzk.INVALIDACL
    assert c.create(base + "/ok").err == 0
    assert c.set_acl(base + "/ok", []).err == rawzk.INVALIDACL
    assert c.set_acl(base + "/ok", None).err == rawzk.INVALIDACL
    assert c.get_children(base).value == ["ok"]


def test_ip_acl(zk, base):
    p = zk.create(base + "/ip", b"i", acl=[make_acl("ip", "127.0.0.1", all=True)])
    assert zk.get(p)[0] == b"i"
    q = zk.create(base + "/ipnet", b"n", acl=[make_acl("ip", "127.0.0.0/8", read=True)])
    assert zk.get(q)[0] == b"n"
    r = zk.create(base + "/ipother", b"o", acl=[make_acl("ip", "10.1.2.3", all=True)])
    with pytest.raises(NoAuthError):
        zk.get(r)


def test_duplicate_acl_entries_removed(zk, base):
    p = zk.create(base + "/dup", b"", acl=OPEN_ACL_UNSAFE + OPEN_ACL_UNSAFE)
    assert acl_tuples(zk.get_acls(p)[0]) == [(Permissions.ALL, "world", "anyone")]


def test_auth_failed_unknown_scheme_closes(raw, zk, base):
    c = raw()
    rep = c.auth("nosuchscheme", b"whatever")
    assert rep.err == rawzk.AUTHFAILED
    assert c.wait_closed(timeout=5)
    assert zk.exists(base) is not None


def test_raw_digest_auth_reply(raw, base, zk):
    p = zk.create(base + "/r", b"v", acl=[make_digest_acl("gina", "pw", all=True)])
    c = raw()
    assert c.get_data(p).err == rawzk.NOAUTH
    rep = c.auth("digest", b"gina:pw")
    assert rep.err == 0 and rep.xid == -4
    r = c.get_data(p)
    assert r.err == 0 and r.value[0] == b"v"
