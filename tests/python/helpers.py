"""Small shared helpers: bounded polling, event collection, Stat relations."""

import threading
import time


def wait_until(pred, timeout=10.0, interval=0.05, msg="condition"):
    """Poll pred() until it returns a truthy value or the deadline passes.
    Returns the value; raises AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last=%r)"
                                 % (timeout, msg, last))
        time.sleep(interval)


class Collector:
    """Thread-safe list of items with a bounded wait."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def __call__(self, *args):
        item = args[0] if len(args) == 1 else args
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()
        return None

    def wait_count(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.items) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("expected >= %d items within %.1fs, got %r"
                                         % (n, timeout, self.items))
                self.cond.wait(remaining)
            return list(self.items)

    def wait_for(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for it in self.items:
                    if pred(it):
                        return it
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("no matching item within %.1fs; got %r"
                                         % (timeout, self.items))
                self.cond.wait(remaining)

    def settle(self, quiet=0.3):
        """Return the items after no new item arrived for `quiet` seconds
        (bounded to 10 quiet periods)."""
        for _ in range(10):
            with self.cond:
                n = len(self.items)
            time.sleep(quiet)
            with self.cond:
                if len(self.items) == n:
                    return list(self.items)
        return list(self.items)

    def snapshot(self):
        with self.cond:
            return list(self.items)


def stat_fields(st):
    """Normalise a kazoo ZnodeStat or a rawzk.Stat to a dict."""
    names = ["czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
             "ephemeralOwner", "dataLength", "numChildren", "pzxid"]
    return {n: getattr(st, n) for n in names}


def stat_shape(st, czxid_ref=None):
    """Zxid/time-free view of a Stat for comparing servers."""
    d = stat_fields(st)
    shape = {
        "version": d["version"],
        "cversion": d["cversion"],
        "aversion": d["aversion"],
        "dataLength": d["dataLength"],
        "numChildren": d["numChildren"],
        "ephemeral": d["ephemeralOwner"] != 0,
        "mzxid==czxid": d["mzxid"] == d["czxid"],
        "pzxid==czxid": d["pzxid"] == d["czxid"],
        "pzxid>=mzxid": d["pzxid"] >= d["mzxid"],
    }
    return shape


class TcpProxy:
    """A loopback TCP proxy that can be 'blocked': while blocked it drops all
    current connections and closes new ones right after accepting them (so a
    client sees its connection die and cannot reconnect, while the server sees
    the client's connection close)."""

    def __init__(self, target_addr):
        import socket
        host, port = target_addr.rsplit(":", 1)
        self.target = (host, int(port))
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.1)
        self.addr = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.blocked = threading.Event()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.pairs = []
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        import socket
        while not self.stopping.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.blocked.is_set():
                c.close()
                continue
            try:
                s = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.pairs.append((c, s))
            for a, b in ((c, s), (s, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        import socket
        src.settimeout(0.2)
        try:
            while not self.stopping.is_set():
                try:
                    data = src.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for x in (src, dst):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _drop_all(self):
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for c, s in pairs:
            for x in (c, s):
                try:
                    x.close()
                except OSError:
                    pass

    def block(self):
        self.blocked.set()
        self._drop_all()

    def unblock(self):
        self.blocked.clear()

    def close(self):
        self.stopping.set()
        self.lsock.close()
        self._drop_all()
        self.thread.join(timeout=2)
