"""`corezk ensemble`, the README's one command for an ensemble on this host: it writes
ZooKeeper zoo.cfg files, starts three nodes, prints the connect string; the bundled loadgen
runs against all three; kill -9 of the leader and writes go on through the others with
nothing acknowledged lost; SIGTERM stops every node."""

import os
import random
import signal
import socket
import subprocess
import tempfile
import time

import pytest
from kazoo.client import KazooClient

import rawzk
import servers
from conftest import require

LOADGEN = os.path.join(servers.REPO_ROOT, "target", "release", "corezk-loadgen")


def free_block(n):
    """A base port b with b..b+n-1 free, below the ephemeral range."""
    rnd = random.Random(os.urandom(8))
    for _ in range(200):
        b = rnd.randint(10000, 30000)
        ok = True
        for p in range(b, b + n):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return b
    raise AssertionError("no free port block")


def mode(port):
    try:
        for line in rawzk.four_letter("127.0.0.1:%d" % port, "srvr", timeout=1).decode().splitlines():
            if line.startswith("Mode: "):
                return line[6:]
    except OSError:
        pass
    return None


@pytest.mark.timeout(240)
def test_one_command_ensemble_survives_its_leader():
    require("corezk")
    base = free_block(9)
    cp, qp, ep = base, base + 3, base + 6
    d = tempfile.mkdtemp(prefix="corezk-ensemble-cmd-")
    p = subprocess.Popen([servers.corezk_bin(), "ensemble", "--dir", d, "--client-port", str(cp),
                          "--quorum-port", str(qp), "--election-port", str(ep)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        connect = p.stdout.readline().strip()
        assert connect == ",".join("127.0.0.1:%d" % (cp + i) for i in range(3)), (connect, p.stderr.read())
        modes = {cp + i: mode(cp + i) for i in range(3)}
        assert sorted(modes.values()) == ["follower", "follower", "leader"], modes
        for i in range(1, 4):
            cfg = open(os.path.join(d, "node%d" % i, "zoo.cfg")).read()
            assert "server.1=127.0.0.1:%d:%d;127.0.0.1:%d" % (qp, ep, cp) in cfg, cfg
        if os.path.exists(LOADGEN):
            lg = subprocess.run([LOADGEN, "--hosts", connect, "--sessions", "6", "--duration", "2",
                                 "--warmup", "0", "--quiet"], capture_output=True, text=True, timeout=120)
            assert lg.returncode == 0, lg.stdout + lg.stderr
        zk = KazooClient(hosts=connect, timeout=10)
        zk.start(timeout=20)
        acked = []
        for i in range(20):
            zk.create("/before-%d" % i, b"x")
            acked.append("/before-%d" % i)
        leader_port = [port for port, m in modes.items() if m == "leader"][0]
        pid = int(subprocess.check_output(["pgrep", "-f", "node%d/zoo.cfg" % (leader_port - cp + 1)],
                                          text=True).split()[0])
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        for i in range(20):
            while True:
                try:
                    zk.create("/after-%d" % i, b"y")
                    break
                except Exception:
                    assert time.monotonic() - t0 < 30, "no write acknowledged 30 s after the leader died"
                    time.sleep(0.05)
            acked.append("/after-%d" % i)
        survivors = [port for port in modes if port != leader_port]
        assert sorted(mode(port) for port in survivors) == ["follower", "leader"]
        for port in survivors:
            c = KazooClient(hosts="127.0.0.1:%d" % port)
            c.start(timeout=20)
            c.sync("/")
            missing = [path for path in acked if c.exists(path) is None]
            c.stop()
            assert not missing, "acknowledged creates lost on :%d: %s" % (port, missing)
        zk.stop()
        err = p.stderr
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        assert "exited" in err.read()
        time.sleep(0.5)
        assert all(mode(port) is None for port in modes), "a node still answers after SIGTERM"
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        subprocess.call(["pkill", "-9", "-f", d])
