"""Scripted zkCli.sh (the Java client shell) sessions against the server.

Commands are piped on stdin and end with `quit`; stdout+stderr are merged
(zkCli prints results on stdout and "Created ..."/errors on stderr, each line
flushed, so the merged order is the command order)."""

import os
import re
import shutil
import subprocess

import pytest
from kazoo.security import make_digest_acl_credential

ZKCLI = os.environ.get("ZKCLI", "/usr/share/zookeeper/bin/zkCli.sh")

pytestmark = pytest.mark.skipif(not (os.path.exists(ZKCLI) and shutil.which("java")),
                                reason="zkCli.sh / java not installed")


def zkcli(server, script=None, args=(), timeout=60):
    cmd = [ZKCLI, "-server", str(server)] + list(args)
    p = subprocess.run(cmd, input=(script or "").encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    out = p.stdout.decode("utf-8", "replace")
    # drop JVM/SLF4J noise
    lines = [l for l in out.splitlines() if not l.startswith("SLF4J:")]
    return p.returncode, lines


def assert_in_order(lines, expected):
    """Each expected item (str: exact line, or compiled regex) must match a
    line after the previous match."""
    i = 0
    for exp in expected:
        while i < len(lines):
            line = lines[i]
            i += 1
            if (exp.match(line) if hasattr(exp, "match") else line == exp):
                break
        else:
            raise AssertionError("expected %r (in order) in zkCli output:\n%s"
                                 % (getattr(exp, "pattern", exp), "\n".join(lines)))


def parse_stat(lines, start):
    st = {}
    for line in lines[start:start + 11]:
        k, _, v = line.partition(" = ")
        st[k] = v
    return st


def test_zkcli_session(server, zk, base):
    b = base
    digest = make_digest_acl_credential("cliuser", "clipw")
    script = "\n".join([
        "create %s/a hello" % b,
        "ls %s" % b,
        "get %s/a" % b,
        "set %s/a world" % b,
        "get -s %s/a" % b,
        "stat %s" % b,
        "create -e %s/eph ephemeral-data" % b,
        "create -s %s/seq- s1" % b,
        "create -s %s/seq- s2" % b,
        "create -e -s %s/es- x" % b,
        "ls %s" % b,
        "create %s/a/b" % b,
        "create %s/a/b/c" % b,
        "delete %s/a" % b,
        "deleteall %s/a" % b,
        "ls %s" % b,
        "get %s/nonexistent" % b,
        "create %s/missing/child" % b,
        "create %s/seq-0000000000 dup" % b,
        "addauth digest cliuser:clipw",
        "create %s/sec secret digest:%s:cdrwa" % (b, digest),
        "getAcl %s/sec" % b,
        "get %s/sec" % b,
        "setAcl %s/sec world:anyone:r" % b,
        "getAcl %s/sec" % b,
        "set %s/sec denied" % b,
        "delete %s/seq-0000000001" % b,
        "ls %s" % b,
        "quit",
        "",
    ])
    rc, lines = zkcli(server, script)
    assert_in_order(lines, [
        "Created %s/a" % b,
        "[a]",
        "hello",
        "world",
        re.compile(r"^cZxid = 0x[0-9a-f]+$"),
    ])
    # get -s stat block
    i = lines.index("world")
    st = parse_stat(lines, i + 1)
    assert st["dataVersion"] == "1"
    assert st["cZxid"] != st["mZxid"]
    assert st["pZxid"] == st["cZxid"]
    assert st["ephemeralOwner"] == "0x0"
    assert st["dataLength"] == "5"
    assert st["numChildren"] == "0"
    assert st["aclVersion"] == "0" and st["cversion"] == "0"
    # stat of the base: one child created so far
    j = [k for k, l in enumerate(lines) if l.startswith("cZxid = ")][1]
    st_base = parse_stat(lines, j)
    assert st_base["numChildren"] == "1" and st_base["cversion"] == "1"
    assert_in_order(lines, [
        "Created %s/eph" % b,
        "Created %s/seq-0000000002" % b,
        "Created %s/seq-0000000003" % b,
        "Created %s/es-0000000004" % b,
        "[a, eph, es-0000000004, seq-0000000002, seq-0000000003]",
        "Created %s/a/b" % b,
        "Created %s/a/b/c" % b,
        "Node not empty: %s/a" % b,
        "[eph, es-0000000004, seq-0000000002, seq-0000000003]",
        "Node does not exist: %s/nonexistent" % b,
        "Node does not exist: %s/missing/child" % b,
        "Created %s/seq-0000000000" % b,     # plain create of that name works
        "Created %s/sec" % b,
        "'digest,'%s" % digest,
        ": cdrwa",
        "secret",
        "'world,'anyone",
        ": r",
        "Insufficient permission : %s/sec" % b,
        "Node does not exist: %s/seq-0000000001" % b,
        "[eph, es-0000000004, sec, seq-0000000000, seq-0000000002, seq-0000000003]",
    ])
    # quit closed the session: its ephemerals are gone
    assert sorted(zk.get_children(b)) == ["sec", "seq-0000000000", "seq-0000000002",
                                          "seq-0000000003"]
    assert zk.get(b + "/sec")[0] == b"secret"


def test_zkcli_single_command_exit_codes(server, zk, base):
    zk.create(base + "/x", b"payload")
    rc, lines = zkcli(server, args=["get", base + "/x"])
    assert rc == 0 and "payload" in lines
    rc, lines = zkcli(server, args=["get", base + "/nope"])
    assert rc != 0
    assert "Node does not exist: %s/nope" % base in lines


def test_zkcli_config_and_special_nodes(server):
    rc, lines = zkcli(server, "ls /zookeeper\ngetAcl /zookeeper/config\n"
                              "delete /zookeeper/quota\ndelete /zookeeper\nquit\n")
    assert_in_order(lines, [
        "[config, quota]",
        "'world,'anyone",
        ": r",
        "Arguments are not valid : /zookeeper/quota",
        "Arguments are not valid : /zookeeper",
    ])
