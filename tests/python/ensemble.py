"""Real-process corezk ensembles on loopback, with faults.

``Ensemble(voters=3, observers=0, proxied=False)`` writes one zoo.cfg per node
(ports picked at run time), starts ``corezk --config zN.cfg --cores 1`` for
each (pinned round-robin to the CPUs this process may use), and waits
(bounded) until every node serves and exactly one leads.  Faults:

- ``kill9(node)``, ``terminate(node)``, ``restart(node)`` (same data dir),
- ``pause(node)`` / ``resume(node)`` (SIGSTOP / SIGCONT),
- with ``proxied=True``: every ordered pair of nodes (i dials j) talks through
  a TCP proxy of its own on j's quorum port and one on j's election port; node
  i's zoo.cfg names j at those proxy ports.  ``partition([[1], [2, 3]])`` cuts
  every link between the groups (both directions), ``heal()`` restores them.
  Link modes: ``pass``; ``blackhole`` (connections stay open, bytes are
  dropped, new connections are accepted and never answered; on heal the
  connections that lost bytes are reset, as TCP would give up on them);
  ``reset`` (connections reset, new ones accepted and reset at once).

Every process is killed and reaped by ``close()`` (also from ``atexit``), a
stopped one is continued first.  The temp dir (configs, data, ``server.log``
of each node) is removed unless ``close(keep=True)`` or ZK_TEST_KEEP_DIRS=1.
Only loopback; nothing needs root.
"""

import asyncio
import atexit
import datetime
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import servers

_live_ensembles = set()
_live_lock = threading.Lock()

PASS, BLACKHOLE, RESET = "pass", "blackhole", "reset"


def _four_letter(port, cmd, timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(cmd.encode())
            chunks = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode("utf-8", "replace")
    except OSError:
        return None


_handed_out = set()
_port_rnd = random.Random(os.urandom(16))


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def pick_ports(n):
    """n distinct free ports for nodes to listen on, below the kernel's ephemeral
    range when there is room: the many client and proxy connections of a test take
    their source ports from that range, so a node restarted later on its ports
    does not find one of them taken."""
    lo, _ = _ephemeral_range()
    out = []
    if lo > 12000:
        while len(out) < n:
            p = _port_rnd.randint(10000, lo - 1)
            if p in _handed_out or p in out:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            finally:
                s.close()
            out.append(p)
    else:
        socks = []
        try:
            while len(out) < n:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind(("127.0.0.1", 0))
                socks.append(s)
                if s.getsockname()[1] not in out:
                    out.append(s.getsockname()[1])
        finally:
            for s in socks:
                s.close()
    _handed_out.update(out)
    return out


def _rst(writer):
    """Close a stream with a TCP reset."""
    try:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class _Pair:
    """One proxied connection: the dialer's side (down) and the target's (up)."""
    __slots__ = ("down", "up", "tainted", "closed")

    def __init__(self, down):
        self.down, self.up, self.tainted, self.closed = down, None, False, False

    def close(self, reset=False):
        if self.closed:
            return
        self.closed = True
        for w in (self.down, self.up):
            if w is None:
                continue
            if reset:
                _rst(w)
            else:
                w.close()


class _Link:
    def __init__(self, name, target_port):
        self.name, self.target_port = name, target_port
        self.mode = PASS
        self.pairs = set()
        self.server = None
        self.port = None
        self.accepted = 0


class ProxyHub:
    """All the links' proxies on one asyncio loop in a daemon thread.

    While a link is blackholed nothing crosses it, not even a close: bytes are
    read and dropped, an end that closes is not closed on the other side, and a
    pair that lost anything is "tainted" and reset when the link passes again
    (its byte stream has a hole).  Mode changes of several links are applied in
    one step of the loop, so no byte crosses a half-made partition."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.links = {}
        self.tasks = set()
        self.thread = threading.Thread(target=self._run, name="proxy-hub", daemon=True)
        self.thread.start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _call(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def add(self, name, target_port):
        """A proxy to 127.0.0.1:target_port; returns the port it listens on."""
        link = _Link(name, target_port)

        async def start():
            link.server = await asyncio.start_server(
                lambda r, w: self._spawn(self._handle(link, r, w)), "127.0.0.1", 0)
            link.port = link.server.sockets[0].getsockname()[1]
        self._call(start())
        self.links[name] = link
        return link.port

    def _spawn(self, coro):
        t = self.loop.create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    def retarget(self, name, target_port):
        self.links[name].target_port = target_port

    def set_modes(self, modes):
        """{link name: mode}, all at once."""
        for m in modes.values():
            assert m in (PASS, BLACKHOLE, RESET), m
        links = [(self.links[name], mode) for name, mode in modes.items()]

        async def apply():
            for link, mode in links:
                link.mode = mode
            for link, mode in links:
                for p in list(link.pairs):
                    if mode == RESET or (mode == PASS and p.tainted):
                        p.close(reset=True)
                        link.pairs.discard(p)
        self._call(apply())

    def set_mode(self, name, mode):
        self.set_modes({name: mode})

    def mode(self, name):
        return self.links[name].mode

    async def _handle(self, link, reader, writer):
        link.accepted += 1
        if link.mode == RESET:
            _rst(writer)
            return
        pair = _Pair(writer)
        link.pairs.add(pair)
        if link.mode == BLACKHOLE:
            # accepted, never answered; bytes dropped; kept open until the link passes
            pair.tainted = True
            await self._pump(link, pair, reader, None)
            return
        try:
            ur, uw = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", link.target_port), 2.0)
        except (OSError, asyncio.TimeoutError):
            link.pairs.discard(pair)
            pair.close(reset=True)
            return
        if pair.closed:
            _rst(uw)
            return
        pair.up = uw
        await asyncio.gather(self._pump(link, pair, reader, uw),
                             self._pump(link, pair, ur, writer))

    async def _pump(self, link, pair, src, dst):
        """Copy src to dst while the link passes; drop (and taint) otherwise."""
        try:
            while not pair.closed:
                try:
                    data = await src.read(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                if link.mode == PASS and not pair.tainted and dst is not None:
                    dst.write(data)
                    await dst.drain()
                else:
                    pair.tainted = True
        except OSError:
            pass
        # src closed: pass the close on, unless the link swallows everything
        if link.mode == PASS and not pair.tainted:
            link.pairs.discard(pair)
            pair.close()
        else:
            pair.tainted = True

    def close(self):
        async def stop():
            for link in self.links.values():
                link.server.close()
                for p in list(link.pairs):
                    p.close(reset=True)
                link.pairs.clear()
            tasks = [t for t in self.tasks if not t.done()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            self._call(stop(), timeout=5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class Node:
    def __init__(self, ens, sid, observer=False):
        self.ens = ens
        self.sid = sid
        self.observer = observer
        self.dir = os.path.join(ens.tmpdir, "n%d" % sid)
        self.data_dir = os.path.join(self.dir, "data")
        self.cfg_path = os.path.join(self.dir, "zoo.cfg")
        self.log_path = os.path.join(self.dir, "server.log")
        os.makedirs(self.data_dir, exist_ok=True)
        with open(os.path.join(self.data_dir, "myid"), "w") as f:
            f.write("%d\n" % sid)
        self.client_port = self.quorum_port = self.election_port = None
        self.proc = None
        self.paused = False
        self.starts = 0
        cpus = sorted(os.sched_getaffinity(0))
        self.cpu = cpus[(sid - 1) % len(cpus)]

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.client_port

    def __repr__(self):
        return "<node %d%s %s pid=%s>" % (self.sid, " obs" if self.observer else "", self.addr,
                                          self.proc.pid if self.proc else None)

    # -- process
    def spawn(self):
        assert self.proc is None or self.proc.poll() is not None, "node %d still running" % self.sid
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(b"\n===== start %d at %.3f =====\n" % (self.starts, time.monotonic()))
            log.flush()
            cmd = [servers.corezk_bin(), "--config", self.cfg_path, "--cores", "1"]
            if shutil.which("taskset"):
                cmd = ["taskset", "-c", str(self.cpu)] + cmd
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.dir,
                                         start_new_session=True)
        self.paused = False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig):
        if self.alive():
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def kill9(self):
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.paused = False

    def terminate(self, timeout=5.0):
        if self.proc is None:
            return
        if self.paused:
            self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
        self.paused = False

    def pause(self):
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self._signal(signal.SIGCONT)
        self.paused = False

    # -- four-letter words
    def four(self, cmd, timeout=1.0):
        if self.client_port is None:
            return None
        return _four_letter(self.client_port, cmd, timeout)

    def srvr(self):
        """srvr as a dict, or None (not answering or not serving)."""
        out = self.four("srvr")
        if not out or "Mode:" not in out:
            return None
        d = {}
        for line in out.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                d[k.strip()] = v.strip()
        return d

    def mode(self):
        if self.paused or not self.alive():
            return None
        d = self.srvr()
        return d.get("Mode") if d else None

    def mntr(self):
        out = self.four("mntr")
        if not out or "zk_server_state" not in out:
            return None
        d = {}
        for line in out.splitlines():
            parts = line.split("\t", 1)
            if len(parts) == 2:
                d[parts[0]] = parts[1]
        return d

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=30):
        return "\n".join(self.log_text().splitlines()[-n:])

    def roles(self):
        """The node's logged role changes: [(unix time, text)], e.g. "looking for
        a leader", "serving clients in epoch 3 (Leading)"."""
        out = []
        for m in _ROLE_LINE.finditer(self.log_text()):
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
                tzinfo=datetime.timezone.utc).timestamp()
            out.append((t, m.group(2)))
        return out


_ROLE_LINE = re.compile(r"^corezk: (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z "
                        r"(looking for a leader|following server \d+|leading: .*|serving clients in .*)$",
                        re.M)


class EnsembleError(AssertionError):
    pass


class Ensemble:
    """See the module doc.  Use as a context manager or call close()."""

    def __init__(self, voters=3, observers=0, proxied=False, tick_time=500, init_limit=10,
                 sync_limit=5, extra=None, name="ens"):
        self.n_voters, self.n_observers = voters, observers
        self.proxied = proxied
        self.tick_time, self.init_limit, self.sync_limit = tick_time, init_limit, sync_limit
        self.extra = dict(extra or {})
        self.name = name
        self.tmpdir = None
        self.nodes = {}
        self.hub = None
        self.closed = False
        self.events = []  # (time, text): what was done to the ensemble, for reports
        self.cleanups = []  # callables run first by close() (e.g. stopping client workloads)

    # -- set-up
    def note(self, text):
        self.events.append((time.monotonic(), text))

    def _pick_ports(self, n):
        return pick_ports(n)

    def _layout(self):
        self.tmpdir = tempfile.mkdtemp(prefix="corezk-%s-" % self.name)
        ids = list(range(1, self.n_voters + self.n_observers + 1))
        ports = self._pick_ports(3 * len(ids))
        self.nodes = {}
        for k, sid in enumerate(ids):
            n = Node(self, sid, observer=sid > self.n_voters)
            n.client_port, n.quorum_port, n.election_port = ports[3 * k: 3 * k + 3]
            self.nodes[sid] = n
        if self.proxied:
            self.hub = ProxyHub()
            self.proxy_ports = {}
            for i in ids:
                for j in ids:
                    if i == j:
                        continue
                    nj = self.nodes[j]
                    self.proxy_ports[(i, j)] = (
                        self.hub.add(self._link(i, j, "q"), nj.quorum_port),
                        self.hub.add(self._link(i, j, "e"), nj.election_port))
        for n in self.nodes.values():
            self._write_cfg(n)

    @staticmethod
    def _link(i, j, kind):
        return "%d->%d/%s" % (i, j, kind)

    def _write_cfg(self, node):
        lines = [
            "tickTime=%d" % self.tick_time,
            "initLimit=%d" % self.init_limit,
            "syncLimit=%d" % self.sync_limit,
            "dataDir=%s" % node.data_dir,
            "clientPort=%d" % node.client_port,
            "clientPortAddress=127.0.0.1",
            "4lw.commands.whitelist=*",
            "maxClientCnxns=0",
        ]
        if node.observer:
            lines.append("peerType=observer")
        for k, v in self.extra.items():
            lines.append("%s=%s" % (k, v))
        for j, nj in sorted(self.nodes.items()):
            if j == node.sid or not self.proxied:
                q, e = nj.quorum_port, nj.election_port
            else:
                q, e = self.proxy_ports[(node.sid, j)]
            lines.append("server.%d=127.0.0.1:%d:%d%s;127.0.0.1:%d"
                         % (j, q, e, ":observer" if nj.observer else "", nj.client_port))
        with open(node.cfg_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=40.0, attempts=3):
        if not servers.corezk_available():
            raise EnsembleError("corezk binary not found at %s" % servers.corezk_bin())
        with _live_lock:
            _live_ensembles.add(self)
        last = None
        for _ in range(attempts):
            self._layout()
            self.note("start")
            for n in self.nodes.values():
                n.spawn()
            try:
                self.wait_ready(timeout)
                return self
            except EnsembleError as e:
                last = e
                clash = any(re.search(r"cannot listen|in use", n.log_text())
                            for n in self.nodes.values())
                self._teardown(keep=not clash)
                if not clash:
                    break
        raise last

    # -- state
    @property
    def voters(self):
        return [n for n in self.nodes.values() if not n.observer]

    @property
    def observers(self):
        return [n for n in self.nodes.values() if n.observer]

    def node(self, sid):
        return self.nodes[sid]

    def modes(self):
        return {sid: n.mode() for sid, n in self.nodes.items()}

    def leaders(self, among=None):
        nodes = among if among is not None else list(self.nodes.values())
        return [n for n in nodes if n.mode() == "leader"]

    def leader(self, among=None):
        """The one node that answers Mode: leader (among the given nodes), or None."""
        ls = self.leaders(among)
        return ls[0] if len(ls) == 1 else None

    def wait_leader(self, timeout=20.0, among=None, exclude=()):
        """Wait until exactly one node of `among` (default: all running, unpaused
        nodes not in `exclude`) leads and a quorum of voters serve with it."""
        deadline = time.monotonic() + timeout
        quorum = self.n_voters // 2 + 1
        last = None
        while True:
            nodes = among if among is not None else [
                n for n in self.nodes.values() if n.alive() and not n.paused and n not in exclude]
            modes = {n.sid: n.mode() for n in nodes}
            last = modes
            ls = [self.nodes[s] for s, m in modes.items() if m == "leader"]
            serving_voters = sum(1 for s, m in modes.items()
                                 if m in ("leader", "follower") and not self.nodes[s].observer)
            if len(ls) == 1 and serving_voters >= quorum:
                return ls[0]
            if time.monotonic() > deadline:
                raise EnsembleError("no single leader with a quorum within %.0fs: modes %r\n%s"
                                    % (timeout, last, self.log_tails()))
            time.sleep(0.05)

    def wait_ready(self, timeout=30.0, nodes=None):
        """Every given node (default: all running, unpaused) serves in its role,
        exactly one leads."""
        deadline = time.monotonic() + timeout
        while True:
            ns = nodes if nodes is not None else [n for n in self.nodes.values()
                                                  if n.proc is not None and not n.paused]
            dead = [n for n in ns if not n.alive()]
            if dead:
                raise EnsembleError("node(s) %s exited (codes %s):\n%s" % (
                    [n.sid for n in dead], [n.proc.returncode for n in dead], self.log_tails()))
            modes = {n.sid: n.mode() for n in ns}
            ok = all((m == "observer") if n.observer else m in ("leader", "follower")
                     for n, m in zip(ns, modes.values()))
            if ok and list(modes.values()).count("leader") == 1:
                return
            if time.monotonic() > deadline:
                raise EnsembleError("ensemble not ready within %.0fs: modes %r\n%s"
                                    % (timeout, modes, self.log_tails()))
            time.sleep(0.05)

    def wait_serving(self, node, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            if not node.alive():
                raise EnsembleError("node %d exited (code %s):\n%s"
                                    % (node.sid, node.proc.returncode, node.log_tail()))
            m = node.mode()
            if m in ("leader", "follower", "observer"):
                return m
            if time.monotonic() > deadline:
                raise EnsembleError("node %d not serving within %.0fs:\n%s"
                                    % (node.sid, timeout, node.log_tail()))
            time.sleep(0.05)

    def hosts(self, nodes=None):
        ns = nodes if nodes is not None else list(self.nodes.values())
        return ",".join(n.addr for n in ns)

    # -- faults
    def kill9(self, node):
        self.note("kill -9 node %d" % node.sid)
        node.kill9()

    def terminate(self, node):
        self.note("SIGTERM node %d" % node.sid)
        node.terminate()

    def pause(self, node):
        self.note("SIGSTOP node %d" % node.sid)
        node.pause()

    def resume(self, node):
        self.note("SIGCONT node %d" % node.sid)
        node.resume()

    def restart(self, node, wait=True, timeout=30.0):
        """Start a stopped or killed node again on its data dir (kill -9 first if
        it runs)."""
        if node.alive():
            node.kill9()
        self.note("restart node %d" % node.sid)
        node.spawn()
        if wait:
            self.wait_serving(node, timeout)
        return node

    def _link_modes(self, a, b, mode, out):
        for i, j in ((a, b), (b, a)):
            for kind in ("q", "e"):
                out[self._link(i, j, kind)] = mode

    def set_link(self, a, b, mode):
        """Both directions between nodes a and b (ids or Nodes), quorum and election."""
        assert self.proxied, "links need Ensemble(proxied=True)"
        modes = {}
        self._link_modes(getattr(a, "sid", a), getattr(b, "sid", b), mode, modes)
        self.hub.set_modes(modes)

    def partition(self, groups, mode=BLACKHOLE):
        """Cut every link between different groups (lists of ids or Nodes), in one
        step; links inside a group pass.  Nodes in no group are cut off from all."""
        assert self.proxied, "partitions need Ensemble(proxied=True)"
        gid = {}
        for g, members in enumerate(groups):
            for m in members:
                gid[getattr(m, "sid", m)] = g
        self.note("partition %r (%s)" % ([[getattr(m, "sid", m) for m in g] for g in groups], mode))
        ids = sorted(self.nodes)
        modes = {}
        for x in range(len(ids)):
            for y in range(x + 1, len(ids)):
                a, b = ids[x], ids[y]
                same = a in gid and b in gid and gid[a] == gid[b]
                self._link_modes(a, b, PASS if same else mode, modes)
        self.hub.set_modes(modes)

    def heal(self):
        self.note("heal")
        ids = sorted(self.nodes)
        modes = {}
        for x in range(len(ids)):
            for y in range(x + 1, len(ids)):
                self._link_modes(ids[x], ids[y], PASS, modes)
        self.hub.set_modes(modes)

    # -- reports and clean-up
    def log_tails(self, n=15):
        out = []
        for sid, node in sorted(self.nodes.items()):
            out.append("--- node %d (%s) %s ---\n%s" % (
                sid, "running" if node.alive() else "exited %s" % (
                    node.proc.returncode if node.proc else "-"),
                node.log_path, node.log_tail(n)))
        return "\n".join(out)

    def _teardown(self, keep=False):
        for n in self.nodes.values():
            if n.proc is None:
                continue
            if n.paused:
                n.resume()
            if n.alive():
                n._signal(signal.SIGKILL)
            try:
                n.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.hub is not None:
            self.hub.close()
            self.hub = None
        if self.tmpdir and not keep and not os.environ.get("ZK_TEST_KEEP_DIRS"):
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def close(self, keep=False):
        """Kill and reap every node, stop the proxies; remove the temp dir unless keep."""
        if self.closed:
            return
        self.closed = True
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception:
                pass
        self._teardown(keep=keep)
        with _live_lock:
            _live_ensembles.discard(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, etype, *a):
        self.close(keep=etype is not None)


@atexit.register
def _cleanup_all():
    with _live_lock:
        ens = list(_live_ensembles)
    for e in ens:
        try:
            e.close(keep=True)
        except Exception:
            pass
