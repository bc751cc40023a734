"""Tests of the fault-test harness itself (ensemble.py): the link proxy's modes
on a plain echo server, and that an ensemble's processes are all gone after
close(), including a paused one."""

import os
import socket
import threading
import time

import pytest

import ensemble
import servers


class Echo:
    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c):
        try:
            while True:
                b = c.recv(4096)
                if not b:
                    break
                c.sendall(b)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.lsock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def hub():
    h = ensemble.ProxyHub()
    e = Echo()
    port = h.add("l", e.port)
    yield h, port
    h.close()
    e.close()


def dial(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.settimeout(1.0)
    return s


def roundtrip(s, data=b"ping"):
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        b = s.recv(4096)
        if not b:
            raise ConnectionError("closed")
        got += b
    return got


def outcome(s):
    """What a read sees within its timeout: 'data', 'timeout', 'eof' or 'reset'."""
    try:
        b = s.recv(4096)
        return "data" if b else "eof"
    except socket.timeout:
        return "timeout"
    except ConnectionResetError:
        return "reset"


def test_proxy_pass_blackhole_reset(hub):
    h, port = hub
    s = dial(port)
    assert roundtrip(s) == b"ping"
    # blackhole: the connection stays open, nothing comes back, nor for a new connection
    h.set_mode("l", ensemble.BLACKHOLE)
    s.sendall(b"lost")
    assert outcome(s) == "timeout"
    s2 = dial(port)
    s2.sendall(b"lost too")
    assert outcome(s2) == "timeout"
    # pass again: the connections that lost bytes are reset, new ones work
    h.set_mode("l", ensemble.PASS)
    assert outcome(s) in ("reset", "eof")
    assert outcome(s2) in ("reset", "eof")
    s3 = dial(port)
    assert roundtrip(s3) == b"ping"
    # reset: open connections reset, new ones reset at once
    h.set_mode("l", ensemble.RESET)
    assert outcome(s3) in ("reset", "eof")
    with pytest.raises(OSError):   # refused: reset at once (maybe while connecting)
        s4 = dial(port)
        time.sleep(0.1)
        s4.sendall(b"x")
        roundtrip(s4)
    h.set_mode("l", ensemble.PASS)
    assert roundtrip(dial(port)) == b"ping"


def test_proxy_blackhole_swallows_close(hub):
    """A blackholed link does not pass a close on: the other end sees nothing."""
    h, port = hub
    s = dial(port)
    assert roundtrip(s) == b"ping"
    h.set_mode("l", ensemble.BLACKHOLE)
    # the echo server side cannot be closed from here, but the dialer's close must not
    # reach it: after the heal the proxy resets what is left
    s.close()
    time.sleep(0.2)
    assert len([p for p in h.links["l"].pairs]) == 1
    h.set_mode("l", ensemble.PASS)
    time.sleep(0.1)
    assert not h.links["l"].pairs


@pytest.mark.skipif(not servers.corezk_available(), reason="corezk binary not built")
@pytest.mark.timeout(60)
def test_ensemble_close_kills_everything():
    ens = ensemble.Ensemble(voters=3, name="harness")
    ens.start()
    try:
        leader = ens.wait_leader()
        pids = [n.proc.pid for n in ens.nodes.values()]
        ens.pause(leader)
        follower = [n for n in ens.nodes.values() if n is not leader][0]
        ens.kill9(follower)
        assert not follower.alive()
    finally:
        ens.close()
    for pid in pids:
        assert not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split()[2] == "Z"
    assert not os.path.exists(ens.tmpdir)
