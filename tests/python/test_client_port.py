"""One server per client port: a second corezk started on a port that a running
corezk serves refuses to start (naming the port) and the first keeps serving; a
restart right after SIGKILL on the same port and data directory comes up at once
and every new connection reaches it (none lands on the dead process's socket)."""

import os
import subprocess
import tempfile
import time

import pytest

import rawzk
import servers
from conftest import require


@pytest.mark.timeout(120)
def test_second_server_on_a_served_port_refuses_to_start():
    require("corezk")
    first = servers.make_server("corezk")
    first.start()
    try:
        c = rawzk.connect(first.addr)
        assert c.create("/kept", b"v").err == 0
        other = tempfile.mkdtemp(prefix="corezk-test-second-")
        t0 = time.monotonic()
        p = subprocess.run([servers.corezk_bin(), "--port", str(first.port), "--bind", first.host,
                            "--data-dir", os.path.join(other, "data")],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        took = time.monotonic() - t0
        err = p.stderr.decode()
        assert p.returncode != 0, "a second server started on a served port:\n" + err
        assert str(first.port) in err and "in use" in err, err
        assert took < 10, "refused only after %.1f s" % took
        # The first server still serves, on the same connection and on new ones.
        assert c.get_data("/kept").value[0] == b"v"
        for _ in range(20):
            n = rawzk.connect(first.addr)
            assert n.get_data("/kept").err == 0
            n.close()
        c.close()
    finally:
        first.stop()


@pytest.mark.timeout(180)
def test_restart_right_after_sigkill_serves_every_new_connection(fresh_server):
    c = rawzk.connect(fresh_server)
    assert c.create("/restart", b"r").err == 0
    c.close()
    for cycle in range(5):
        t0 = time.monotonic()
        fresh_server.proc.restart(hard=True)
        took = time.monotonic() - t0
        assert took < 15, "cycle %d: restart took %.1f s" % (cycle, took)
        # Every connection must reach the new process: with a shared port some
        # would land on the dead listener and see EOF.
        for i in range(30):
            n = rawzk.connect(fresh_server)
            assert n.get_data("/restart").value[0] == b"r", (cycle, i)
            n.close()
