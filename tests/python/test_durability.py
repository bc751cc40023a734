"""Durability: acknowledged writes survive SIGKILL, recovery from damaged files, a full disk,
and the dump tools (issue 3). corezk only: these exercise corezk's own log and snapshots."""

import glob
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError, SystemZookeeperError

import rawzk
import servers

pytestmark = pytest.mark.skipif(not servers.corezk_available(), reason="corezk binary not built")


def start(extra=None):
    s = servers.CoreZKServer(extra_set=extra or {})
    s.start()
    return s


def client(addr, timeout=10.0):
    c = KazooClient(hosts=addr, timeout=timeout, connection_retry={"max_tries": 0})
    c.start(timeout=10)
    return c


def stop_client(c):
    try:
        c.stop()
    finally:
        c.close()


def logs(s):
    return sorted(glob.glob(os.path.join(s.data_dir, "log.*")))


def snapshots(s):
    return sorted(glob.glob(os.path.join(s.data_dir, "snapshot.*")))


def srvr_zxid(s):
    import socket
    with socket.create_connection((s.host, s.port), timeout=5) as so:
        so.sendall(b"srvr")
        out = b""
        while True:
            b = so.recv(4096)
            if not b:
                break
            out += b
    for line in out.decode().splitlines():
        if line.startswith("Zxid: "):
            return int(line.split("0x")[1], 16)
    raise AssertionError(out)


def run_start_expect_failure(s):
    """Starts the server binary on the existing data dir and expects it to exit non-zero."""
    p = subprocess.run(s._command(), cwd=s.tmpdir, capture_output=True, timeout=30)
    assert p.returncode != 0, p.stderr.decode()
    return p.stderr.decode()


def test_acknowledged_writes_survive_sigkill():
    s = start({"snapCount": "400"})
    rnd = random.Random(1234)
    acked = {}          # path -> last acknowledged value
    lock = threading.Lock()
    last_zxid = 0
    try:
        for cycle in range(6):
            stop = threading.Event()
            errors = []

            def writer(w):
                try:
                    c = client(s.addr)
                except Exception as e:  # the server may die while connecting
                    errors.append(e)
                    return
                i = 0
                while not stop.is_set():
                    path = "/crash/c%d-w%d-%d" % (cycle, w, i)
                    try:
                        c.create(path, b"v%d" % i, makepath=True)
                        with lock:
                            acked[path] = b"v%d" % i
                        c.set("/crash/shared%d" % w, b"%d" % (cycle * 100000 + i)) if c.exists(
                            "/crash/shared%d" % w) else c.create("/crash/shared%d" % w, b"0", makepath=True)
                        with lock:
                            acked["/crash/shared%d" % w] = c.get("/crash/shared%d" % w)[0]
                    except NodeExistsError:
                        pass
                    except Exception:
                        break
                    i += 1
                try:
                    c.stop()
                    c.close()
                except Exception:
                    pass

            threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(3)]
            for t in threads:
                t.start()
            time.sleep(rnd.uniform(0.4, 1.2))
            s.restart(hard=True)       # SIGKILL mid-stream, restart on the same data dir
            stop.set()
            for t in threads:
                t.join(timeout=20)
            c = client(s.addr)
            try:
                with lock:
                    snapshot = dict(acked)
                missing = [p for p, v in snapshot.items()
                           if not p.startswith("/crash/shared") and c.exists(p) is None]
                assert not missing, "acknowledged creates lost after crash %d: %s" % (cycle, missing[:5])
                for p, v in snapshot.items():
                    if p.startswith("/crash/shared"):
                        got = int(c.get(p)[0])
                        assert got >= int(v), "%s went back from %s to %s" % (p, v, got)
                z = srvr_zxid(s)
                assert z >= last_zxid, "zxid went backwards after restart"
                last_zxid = z
            finally:
                stop_client(c)
        assert len(acked) > 50, "the crash test wrote too little to mean anything"
        assert snapshots(s), "snapCount=400 should have produced snapshots"
    finally:
        s.stop()


def test_sessions_survive_restart_and_expire_later():
    s = start()
    try:
        a = KazooClient(hosts=s.addr, timeout=8.0)
        a.start(timeout=10)
        a.create("/eph", b"x", ephemeral=True)
        sid = a.client_id[0]
        s.restart(hard=True)
        # kazoo re-attaches its session after the restart: same id, ephemeral still there.
        deadline = time.monotonic() + 15
        while True:
            try:
                if a.connected and a.exists("/eph") is not None:
                    break
            except KazooException:
                pass
            assert time.monotonic() < deadline, "session did not come back after restart"
            time.sleep(0.2)
        assert a.client_id[0] == sid
        a.stop()  # closes the session: the ephemeral goes
        a.close()
        c = client(s.addr)
        assert c.exists("/eph") is None
        # A session whose client never comes back expires after the restart.
        d = rawzk.RawZK(s.addr)
        d.connect(timeout_ms=4000)
        d.create("/eph2", b"", flags=1)
        s.restart(hard=True)
        d.close()
        stop_client(c)
        e = client(s.addr)
        deadline = time.monotonic() + 20
        while e.exists("/eph2") is not None:
            assert time.monotonic() < deadline, "a session that never returned did not expire after restart"
            time.sleep(0.2)
        stop_client(e)
    finally:
        s.stop()


def write_some(s, n, prefix="/d"):
    c = client(s.addr)
    try:
        for i in range(n):
            c.create("%s%04d" % (prefix, i), b"x" * 100, makepath=True)
    finally:
        stop_client(c)


def test_truncated_tail_is_cut_off():
    s = start()
    try:
        write_some(s, 20)
        s.kill_hard()
        log = logs(s)[-1]
        # Find the end of the used part (records are padded to 4 KiB blocks; the rest is zeros)
        data = open(log, "rb").read()
        used = len(data.rstrip(b"\0"))
        used = (used + 4095) // 4096 * 4096
        # Write a half record after the last one: a torn write.
        with open(log, "r+b") as f:
            f.seek(used)
            f.write(b"CZKR" + os.urandom(3000))
        s.restart()
        assert "torn" in s.log_tail(80).lower() or "discard" in s.log_tail(80).lower(), s.log_tail()
        c = client(s.addr)
        assert len(c.get_children("/")) >= 2 and c.exists("/d0019") is not None
        stop_client(c)
    finally:
        s.stop()


def test_flipped_byte_mid_log_is_a_startup_error():
    s = start()
    try:
        write_some(s, 30)
        s.kill_hard()
        log = logs(s)[-1]
        with open(log, "r+b") as f:
            f.seek(4096 + 200)   # inside the second record; later records are intact
            b = f.read(1)
            f.seek(4096 + 200)
            f.write(bytes([b[0] ^ 0xFF]))
        err = run_start_expect_failure(s)
        assert os.path.basename(log) in err and "offset 4096" in err, err
    finally:
        s.stop()


def test_corrupt_newest_snapshot_falls_back_to_older():
    s = start({"snapCount": "10"})
    try:
        write_some(s, 60)
        deadline = time.monotonic() + 10
        while len(snapshots(s)) < 2:
            assert time.monotonic() < deadline, "expected at least two snapshots"
            time.sleep(0.1)
        s.kill_hard()
        newest = snapshots(s)[-1]
        with open(newest, "r+b") as f:
            f.seek(100)
            f.write(b"\xff" * 8)
        s.restart()
        assert "corrupt" in s.log_tail(80), s.log_tail()
        c = client(s.addr)
        assert all(c.exists("/d%04d" % i) for i in range(60))
        stop_client(c)
    finally:
        s.stop()


def test_missing_segment_is_a_startup_error():
    s = start({"snapCount": "100000", "preAllocSize": "16"})   # 16 KiB segments: many files
    try:
        write_some(s, 40)
        s.kill_hard()
        segs = logs(s)
        assert len(segs) >= 3, segs
        os.remove(segs[1])
        err = run_start_expect_failure(s)
        assert "gap" in err or "missing" in err, err
    finally:
        s.stop()


def test_dump_tools():
    s = start({"snapCount": "10"})
    try:
        write_some(s, 15)
        deadline = time.monotonic() + 10
        while not snapshots(s):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        s.kill_hard()
        out = subprocess.run([servers.corezk_bin(), "log", "dump", s.data_dir], capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        text = out.stdout.decode()
        assert "/d0014" in text and "createSession" in text.replace(" ", "") or "/d0014" in text, text[:2000]
        out = subprocess.run([servers.corezk_bin(), "snapshot", "dump", snapshots(s)[-1]], capture_output=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        assert "/d0001" in out.stdout.decode()
    finally:
        s.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small tmpfs")
def test_disk_full_refuses_writes_keeps_reads_and_recovers():
    mnt = tempfile.mkdtemp(prefix="corezk-full-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount tmpfs: %s" % r.stderr.decode())
    s = servers.CoreZKServer(extra_set={"preAllocSize": "64", "dataLogDir": mnt})
    try:
        s.start()
        c = client(s.addr)
        c.create("/keep", b"k")
        # A second session, opened before the disk fills (a new session is itself a transaction,
        # so none can be opened while the log cannot be written).
        other = client(s.addr)
        # Fill the filesystem.
        with open(os.path.join(mnt, "filler"), "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        # Writes continue until the log needs space it cannot get. The write that hits the
        # full disk waits (it is retried, never lost); writes after it are refused at once.
        stuck = None
        for i in range(400):
            a = c.create_async("/full%04d" % i, b"y" * 900)
            try:
                a.get(timeout=3)
            except SystemZookeeperError:
                break          # refused: the failure was noticed before this one was logged
            except Exception:
                stuck = (i, a)  # no answer yet: waiting for the disk
                break
        else:
            pytest.fail("writes kept being acknowledged on a full disk")
        with pytest.raises(SystemZookeeperError):
            other.create("/refused", b"")
        assert other.get("/keep")[0] == b"k", "reads must keep working"
        assert other.exists("/refused") is None
        os.remove(os.path.join(mnt, "filler"))
        if stuck is not None:
            assert stuck[1].get(timeout=15) == "/full%04d" % stuck[0], "the waiting write completes"
        deadline = time.monotonic() + 15
        while True:
            try:
                other.create("/after-full", b"ok")
                break
            except SystemZookeeperError:
                assert time.monotonic() < deadline, "writes did not resume once space was back"
                time.sleep(0.2)
        stop_client(other)
        stop_client(c)
        s.restart(hard=True)
        c = client(s.addr)
        assert c.get("/after-full")[0] == b"ok" and c.get("/keep")[0] == b"k"
        stop_client(c)
    finally:
        s.stop()
        subprocess.run(["umount", "-l", mnt])
        shutil.rmtree(mnt, ignore_errors=True)


def mntr(s):
    return dict(l.split("\t", 1) for l in rawzk.four_letter(s.addr, "mntr").decode().splitlines() if "\t" in l)


def test_slow_log_writes_are_logged_and_shown_in_mntr():
    """Every log write slower than fsync.warningthresholdms is logged with its duration; mntr
    shows the slowest recent and ever. A threshold of 0 ms makes every write slow; the default
    (1000 ms) makes none on a healthy disk."""
    slow = start({"fsync.warningthresholdms": "0"})
    fine = start()
    try:
        for s in (slow, fine):
            c = client(s.addr)
            try:
                for i in range(5):
                    c.create("/slow%d" % i, b"x")
            finally:
                stop_client(c)
        m = mntr(slow)
        assert int(m["zk_log_slow_writes"]) >= 5, m
        assert int(m["zk_log_write_max_recent_us"]) > 0, m
        assert int(m["zk_log_write_max_us"]) >= int(m["zk_log_write_max_recent_us"]), m
        with open(slow.log_path, "rb") as f:
            text = f.read().decode(errors="replace")
        assert "writing and syncing the transaction log took" in text, text[-2000:]
        assert "fsync.warningthresholdms=0" in text
        m = mntr(fine)
        assert int(m["zk_log_slow_writes"]) == 0, m
        assert int(m["zk_log_write_max_recent_us"]) > 0, m
        with open(fine.log_path, "rb") as f:
            assert b"writing and syncing the transaction log took" not in f.read()
    finally:
        slow.stop()
        fine.stop()
