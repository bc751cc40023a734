#!/usr/bin/env python3
"""Starts corezk many times in a row (optionally several at once, optionally with CPU
burners) and reports how long each start took until a client session was established.

A start fails if the server does not serve a new session within --limit seconds, or if its
log shows a re-execution. Exit code 1 when any start failed.

    tests/tools/start_stress.py --starts 200 --parallel 4 --burners 2
"""

import argparse
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_ok(port, timeout=0.5):
    """Opens a ZooKeeper session (connect request, protocol version 0) and checks the reply."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            body = struct.pack(">iqiq", 0, 0, 30000, 0) + struct.pack(">i", 16) + b"\0" * 16 + b"\0"
            s.sendall(struct.pack(">i", len(body)) + body)
            head = s.recv(4)
            if len(head) < 4:
                return False
            (n,) = struct.unpack(">i", head)
            data = b""
            while len(data) < n:
                chunk = s.recv(n - len(data))
                if not chunk:
                    return False
                data += chunk
            _, timeout_ms, session = struct.unpack(">iiq", data[:16])
            return session != 0 and timeout_ms > 0
    except OSError:
        return False


def one_start(binary, cores, limit, on_hang=None):
    d = tempfile.mkdtemp(prefix="corezk-start-")
    port = free_port()
    log = open(os.path.join(d, "log"), "w+")
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "--port", str(port), "--data-dir", os.path.join(d, "data"),
                          "--cores", str(cores)], stdout=log, stderr=subprocess.STDOUT)
    took = None
    try:
        while time.monotonic() - t0 < limit:
            if p.poll() is not None:
                break
            if session_ok(port):
                took = time.monotonic() - t0
                break
            time.sleep(0.01)
        if took is None and on_hang and p.poll() is None:
            subprocess.call(on_hang.format(pid=p.pid), shell=True)
    finally:
        p.kill()
        p.wait()
        log.seek(0)
        text = log.read()
        log.close()
        shutil.rmtree(d, ignore_errors=True)
    reexec = "starting again" in text
    return took, reexec, text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.environ.get("COREZK_BIN", os.path.join(ROOT, "target/release/corezk")))
    ap.add_argument("--starts", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--burners", type=int, default=0, help="busy-loop processes to load the CPUs")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--limit", type=float, default=10.0, help="seconds a start may take")
    ap.add_argument("--on-hang", help="shell command run on a start that did not serve in time ({pid})")
    a = ap.parse_args()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(a.burners)]
    results, lock = [], threading.Lock()
    counter = iter(range(a.starts))

    def worker():
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            r = one_start(a.binary, a.cores, a.limit, a.on_hang)
            with lock:
                results.append(r)
                if r[0] is None or r[1]:
                    print("FAILED start (%s):\n%s" % ("re-executed" if r[1] else "not serving in %.0f s" % a.limit,
                                                      r[2][-2000:]), flush=True)

    try:
        threads = [threading.Thread(target=worker) for _ in range(a.parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for b in burners:
            b.kill()
            b.wait()
    times = sorted(r[0] for r in results if r[0] is not None)
    failed = [r for r in results if r[0] is None or r[1]]
    pct = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000 if times else float("nan")
    print("starts=%d parallel=%d burners=%d cores=%d: failed=%d reexecuted=%d; time to first session ms: "
          "p50=%.0f p90=%.0f p99=%.0f max=%.0f" % (len(results), a.parallel, a.burners, a.cores, len(failed),
                                                   sum(1 for r in results if r[1]), pct(0.5), pct(0.9), pct(0.99),
                                                   pct(1.0)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
