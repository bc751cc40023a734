"""Read-only mode (readonlymode.enabled=true): an ensemble member that has lost its quorum
serves reads to clients that allow read-only mode (kazoo read_only=True), refuses their writes
with NotReadOnly, answers isro with "ro" and srvr with "Mode: read-only"; clients that do not
allow it are not served; when the quorum is back the node serves read-write again and its
read-only clients reconnect. Without the setting nothing is served."""

import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NotReadOnlyCallError

import ensemble
import rawzk
from conftest import require


def wait_for(what, check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = check()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("%s: not within %.0f s" % (what, timeout))


def isro(node):
    try:
        return rawzk.four_letter(node.addr, "isro").decode()
    except OSError:
        return None


@pytest.mark.timeout(180)
def test_a_member_without_quorum_serves_read_only_clients():
    require("corezk")
    ens = ensemble.Ensemble(voters=3, name="readonly", extra={"readonlymode.enabled": "true"}).start()
    try:
        survivor = ens.voters[0]
        zk = KazooClient(hosts=survivor.addr)
        zk.start(timeout=20)
        zk.create("/ro", b"before")
        zk.stop()
        assert isro(survivor) == "rw"
        for n in ens.voters[1:]:
            n.kill9()
        # ZooKeeper waits max(2 s, tickTime) without a quorum before read-only mode.
        wait_for("read-only mode", lambda: isro(survivor) == "ro", 20)
        assert "Mode: read-only" in rawzk.four_letter(survivor.addr, "srvr").decode()
        ro = KazooClient(hosts=survivor.addr, read_only=True)
        ro.start(timeout=20)
        try:
            assert ro.client_state == "CONNECTED_RO"
            assert ro.get("/ro")[0] == b"before"
            assert ro.exists("/ro") is not None
            assert ro.get_children("/") and "ro" in ro.get_children("/")
            with pytest.raises(NotReadOnlyCallError):
                ro.set("/ro", b"refused")
            with pytest.raises(NotReadOnlyCallError):
                ro.create("/ro2")
            # A client that does not allow read-only mode is not served.
            with pytest.raises(Exception):
                rawzk.connect(survivor.addr, timeout_ms=4000, read_only=False).get_data("/ro")
            for n in ens.voters[1:]:
                n.spawn()
            wait_for("read-write again", lambda: isro(survivor) == "rw", 40)

            def wrote():
                try:
                    ro.set("/ro", b"after")
                    return True
                except Exception:
                    return False
            wait_for("a write through the reconnected client", wrote, 40)
            assert ro.client_state == "CONNECTED"
        finally:
            ro.stop()
            ro.close()
        log = survivor.log_text()
        assert "serving read-only clients" in log and "read-only mode ends" in log, log[-2000:]
    finally:
        ens.close()


@pytest.mark.timeout(120)
def test_without_the_setting_a_member_without_quorum_serves_nobody():
    require("corezk")
    ens = ensemble.Ensemble(voters=3, name="noreadonly").start()
    try:
        survivor = ens.voters[0]
        for n in ens.voters[1:]:
            n.kill9()
        wait_for("not serving", lambda: isro(survivor) == "null", 20)
        time.sleep(3)  # past the read-only delay
        assert isro(survivor) == "null"
        with pytest.raises(Exception):
            c = rawzk.connect(survivor.addr, timeout_ms=4000, read_only=True)
            c.get_data("/")
    finally:
        ens.close()
