"""pytest fixtures for the corezk Python suite.

Fixtures
  corezk        address ("127.0.0.1:PORT") of a running corezk (session-wide);
                skips if the binary does not exist, errors if it fails to start.
  zk_reference  address of a running Apache ZooKeeper 3.8 (session-wide).
  server        parametrized over env ZK_TARGETS (comma list of corezk, zk;
                default corezk).  ``server.kind`` tells which one.
  fresh_server  like ``server`` but a brand-new process for this test only.
  zk            a started kazoo client connected to ``server``.
  kz            factory: kz(**kazoo_kwargs) -> started KazooClient on ``server``
  raw           factory: raw(timeout_ms=...) -> connected rawzk.RawZK on ``server``
  base          a unique, freshly created znode path for this test.

After every test that used a shared server the server process is checked; if
it died during the test, the test errors (with the log tail) and the server is
restarted for the following tests.
"""

import os
import re
import signal
import itertools

import pytest
from kazoo.client import KazooClient

import rawzk
import servers

TARGETS = [t.strip() for t in os.environ.get("ZK_TARGETS", "corezk").split(",") if t.strip()]
for _t in TARGETS:
    if _t not in ("corezk", "zk"):
        raise pytest.UsageError("ZK_TARGETS entries must be corezk or zk, got %r" % _t)

KAZOO_SESSION_TIMEOUT = 10.0
KAZOO_START_TIMEOUT = 15.0


class Addr(str):
    """An address string that also knows which server kind it is."""

    def __new__(cls, addr, kind, proc=None):
        s = super().__new__(cls, addr)
        s.kind = kind
        s.proc = proc
        return s


def require(kind):
    if kind == "corezk" and not servers.corezk_available():
        pytest.skip("corezk binary not found at %s (build with `cargo build --release` "
                    "or set COREZK_BIN)" % servers.corezk_bin())
    if kind.startswith("zk") and not servers.zk_available():
        pytest.skip("Apache ZooKeeper (%s) or java not installed" % servers.ZK_JAR)


class ServerPool:
    """Shared servers, started lazily.  A start-up failure fails the test that
    asked for the server; later tests try again with a new process, up to
    MAX_START_FAILURES failures per kind, then fail at once (so a binary that
    cannot start does not cost a start timeout per test)."""

    MAX_START_FAILURES = 3

    def __init__(self):
        self.servers = {}
        self.failures = {}

    def get(self, kind):
        require(kind)
        errs = self.failures.get(kind, [])
        if len(errs) >= self.MAX_START_FAILURES:
            pytest.fail("%s failed to start %d times in this run; first error:\n%s"
                        % (kind, len(errs), errs[0]), pytrace=False)
        srv = self.servers.get(kind)
        if srv is None or not srv.alive():
            srv = servers.make_server(kind)
            try:
                srv.start()
            except servers.ServerStartError as e:
                self.failures.setdefault(kind, []).append(str(e))
                pytest.fail(str(e), pytrace=False)
            self.servers[kind] = srv
        return srv

    def check_alive(self, kind):
        srv = self.servers.get(kind)
        if srv is not None and not srv.alive():
            rc = srv.returncode()
            tail = srv.log_tail(60)
            srv.stop(keep_dir=True)
            del self.servers[kind]
            pytest.fail("%s server process died during this test (exit code %s); log tail:\n%s"
                        % (kind, rc, tail), pytrace=False)

    def stop_all(self):
        for srv in self.servers.values():
            srv.stop()
        self.servers.clear()


@pytest.fixture(scope="session")
def server_pool():
    pool = ServerPool()
    yield pool
    pool.stop_all()


def _shared(pool, kind):
    srv = pool.get(kind)
    yield Addr(srv.addr, kind, srv)
    pool.check_alive(kind)


@pytest.fixture
def corezk(server_pool):
    yield from _shared(server_pool, "corezk")


@pytest.fixture
def zk_reference(server_pool):
    yield from _shared(server_pool, "zk")


@pytest.fixture
def diff_candidate(server_pool):
    """The server compared against zk_reference by the differential tests:
    corezk, or (ZK_DIFF_CANDIDATE=zk) a second Apache ZooKeeper, which checks
    that the scenarios themselves are deterministic."""
    kind = "zk-2" if os.environ.get("ZK_DIFF_CANDIDATE") == "zk" else "corezk"
    yield from _shared(server_pool, kind)


@pytest.fixture(params=TARGETS)
def server(request, server_pool):
    yield from _shared(server_pool, request.param)


@pytest.fixture(params=TARGETS)
def fresh_server(request):
    kind = request.param
    require(kind)
    srv = servers.make_server(kind)
    try:
        srv.start()
    except servers.ServerStartError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield Addr(srv.addr, kind, srv)
    finally:
        died = not srv.alive()
        rc, tail = srv.returncode(), (srv.log_tail(60) if died else "")
        srv.stop()
        if died:
            pytest.fail("%s died during this test (exit code %s); log tail:\n%s" % (kind, rc, tail),
                        pytrace=False)


def start_kazoo(addr, **kw):
    kw.setdefault("timeout", KAZOO_SESSION_TIMEOUT)
    start_timeout = kw.pop("start_timeout", KAZOO_START_TIMEOUT)
    c = KazooClient(hosts=str(addr), **kw)
    try:
        c.start(timeout=start_timeout)
    except Exception:
        stop_kazoo(c)
        raise
    return c


def stop_kazoo(c):
    try:
        c.stop()
    except Exception:
        pass
    try:
        c.close()
    except Exception:
        pass


class ClientFactory:
    """Makes kazoo/raw clients on an address and closes them all at teardown."""

    def __init__(self, addr):
        self.addr = addr
        self.kazoos = []
        self.raws = []

    def kazoo(self, **kw):
        c = start_kazoo(self.addr, **kw)
        self.kazoos.append(c)
        return c

    def raw(self, timeout_ms=30000, connect=True, **kw):
        r = rawzk.RawZK(self.addr)
        self.raws.append(r)
        if connect:
            r.connect(timeout_ms=timeout_ms, **kw)
        return r

    def close(self):
        for c in self.kazoos:
            stop_kazoo(c)
        for r in self.raws:
            r.close()


@pytest.fixture
def clients(server):
    f = ClientFactory(server)
    yield f
    f.close()


@pytest.fixture
def kz(clients):
    return clients.kazoo


@pytest.fixture
def raw(clients):
    return clients.raw


@pytest.fixture
def zk(clients):
    return clients.kazoo()


_counter = itertools.count()


def unique_name(request):
    name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:60]
    return "t_%s_%d_%d" % (name, os.getpid(), next(_counter))


@pytest.fixture
def base(zk, request):
    path = "/" + unique_name(request)
    zk.create(path, b"")
    return path


# ---------------------------------------------------------------------------
# per-test timeout: pytest-timeout if installed (pytest.ini sets `timeout`),
# otherwise a SIGALRM fallback with the same ini value.

try:
    import pytest_timeout  # noqa: F401
    HAVE_PYTEST_TIMEOUT = True
except ImportError:
    HAVE_PYTEST_TIMEOUT = False


def pytest_addoption(parser):
    if not HAVE_PYTEST_TIMEOUT:
        parser.addini("timeout", "per-test timeout in seconds (fallback)", default="60")
        parser.addini("timeout_method", "ignored (fallback)", default="signal")


if not HAVE_PYTEST_TIMEOUT:
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        secs = int(float(item.config.getini("timeout") or 60))
        m = item.get_closest_marker("timeout")
        if m and m.args:
            secs = int(m.args[0])

        def on_alarm(signum, frame):
            raise TimeoutError("test exceeded %ds (fallback timeout)" % secs)

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(secs)
        try:
            yield
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): per-test timeout")
    config.addinivalue_line("markers", "slow: takes several seconds (session expiry, TTL)")
