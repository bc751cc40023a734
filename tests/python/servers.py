"""Start/stop helpers for corezk and Apache ZooKeeper 3.8 (the reference).

Every server runs on 127.0.0.1 on a port picked at run time, in its own
temporary directory.  ``start()`` waits (bounded) until ``ruok`` answers
``imok``; ``stop()`` always kills and reaps the process.
"""

import atexit
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_COREZK_BIN = os.path.join(REPO_ROOT, "target", "release", "corezk")

SUPER_DIGEST = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="  # super:test
TICK_TIME = 2000
CONTAINER_CHECK_INTERVAL_MS = 500

ZK_JAR = "/usr/share/java/zookeeper.jar"
ZK_CP_EXTRA = ["/usr/share/java/slf4j-log4j12.jar", "/usr/share/java/log4j-1.2.jar"]

_live = set()


def corezk_bin():
    return os.environ.get("COREZK_BIN", DEFAULT_COREZK_BIN)


def corezk_available():
    b = corezk_bin()
    return os.path.isfile(b) and os.access(b, os.X_OK)


def zk_available():
    return os.path.isfile(ZK_JAR) and shutil.which(os.environ.get("ZK_JAVA", "java")) is not None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ruok(host, port, timeout=1.0):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"ruok")
            data = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and len(data) < 16:
                b = s.recv(64)
                if not b:
                    break
                data += b
            return data == b"imok"
    except OSError:
        return False


class ServerStartError(RuntimeError):
    pass


class ServerProcess:
    """Base: subclasses provide kind and _command()."""

    kind = "?"
    start_timeout = 30.0

    def __init__(self, name=None):
        self.name = name or self.kind
        self.host = "127.0.0.1"
        self.port = None
        self.proc = None
        self.tmpdir = None
        self.log_path = None
        self._log_file = None

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    # -- subclass hooks
    def _prepare(self):
        raise NotImplementedError

    def _command(self):
        raise NotImplementedError

    # -- lifecycle
    def start(self, attempts=3):
        last = None
        for _ in range(attempts):
            self.tmpdir = tempfile.mkdtemp(prefix="corezk-test-%s-" % self.kind)
            self.port = free_port()
            self._prepare()
            self.log_path = os.path.join(self.tmpdir, "server.log")
            self._log_file = open(self.log_path, "wb")
            cmd = self._command()
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=self._log_file,
                stderr=subprocess.STDOUT, cwd=self.tmpdir, start_new_session=True)
            _live.add(self)
            try:
                self._wait_ready()
                return self
            except ServerStartError as e:
                last = e
                self.stop()
                # retry only for a port clash (someone grabbed the port)
                if "in use" not in str(e).lower():
                    break
        raise last

    def _wait_ready(self):
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise ServerStartError("%s exited with code %s during start-up; log tail:\n%s"
                                       % (self.name, rc, self.log_tail()))
            if ruok(self.host, self.port, timeout=1.0) and self._serving():
                return
            time.sleep(0.1)
        raise ServerStartError("%s did not answer ruok within %.0fs; log tail:\n%s"
                               % (self.name, self.start_timeout, self.log_tail()))

    def _serving(self):
        return True

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def returncode(self):
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return "(no log)"

    def stop(self, keep_dir=False):
        p = self.proc
        if p is not None:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    try:
                        p.kill()
                    except ProcessLookupError:
                        pass
                    try:
                        p.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        pass
            else:
                p.wait()  # reap
        self.proc = None
        _live.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.tmpdir and not keep_dir and not os.environ.get("ZK_TEST_KEEP_DIRS"):
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def restart(self, hard=False):
        """Stop (SIGTERM, or SIGKILL if hard) and start again on the same port
        with the same data directory."""
        p = self.proc
        if p is not None and p.poll() is None:
            if hard:
                p.kill()
            else:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        elif p is not None:
            p.wait()
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(b"\n===== restart (%s) =====\n" % (b"SIGKILL" if hard else b"SIGTERM"))
        self._log_file.flush()
        self.proc = subprocess.Popen(
            self._command(), stdin=subprocess.DEVNULL, stdout=self._log_file,
            stderr=subprocess.STDOUT, cwd=self.tmpdir, start_new_session=True)
        _live.add(self)
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self._wait_ready()
                return self
            except ServerStartError:
                # the old listener may linger for a moment; retry while time remains
                if self.proc.poll() is None or time.monotonic() > deadline:
                    raise
                self.proc = subprocess.Popen(
                    self._command(), stdin=subprocess.DEVNULL, stdout=self._log_file,
                    stderr=subprocess.STDOUT, cwd=self.tmpdir, start_new_session=True)
                time.sleep(0.2)

    def kill_hard(self):
        """SIGKILL without cleaning up the data dir (for crash tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __repr__(self):
        return "<%s %s pid=%s>" % (self.name, self.addr if self.port else "-",
                                   self.proc.pid if self.proc else None)


class CoreZKServer(ServerProcess):
    kind = "corezk"
    start_timeout = float(os.environ.get("COREZK_START_TIMEOUT", "20"))

    def __init__(self, name=None, extra_set=None):
        super().__init__(name)
        self.extra_set = dict(extra_set or {})

    def _prepare(self):
        self.data_dir = os.path.join(self.tmpdir, "data")
        os.makedirs(self.data_dir, exist_ok=True)

    def settings(self):
        s = {
            "tickTime": str(TICK_TIME),
            "4lw.commands.whitelist": "*",
            "DigestAuthenticationProvider.superDigest": SUPER_DIGEST,
            "znode.container.checkIntervalMs": str(CONTAINER_CHECK_INTERVAL_MS),
            "extendedTypesEnabled": "true",
            "maxClientCnxns": "0",
        }
        s.update(self.extra_set)
        return s

    def _command(self):
        cmd = [corezk_bin(), "--port", str(self.port), "--bind", self.host,
               "--data-dir", self.data_dir]
        if os.environ.get("COREZK_CORES"):
            cmd += ["--cores", os.environ["COREZK_CORES"]]
        for k, v in self.settings().items():
            cmd += ["--set", "%s=%s" % (k, v)]
        cmd += shlex.split(os.environ.get("COREZK_EXTRA_ARGS", ""))
        return cmd


LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=%s
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%%d{ISO8601} [myid:%%X{myid}] - %%-5p [%%t:%%C{1}@%%L] - %%m%%n
"""


class ZooKeeperServer(ServerProcess):
    kind = "zk"
    start_timeout = float(os.environ.get("ZK_START_TIMEOUT", "40"))

    def _prepare(self):
        self.conf_dir = os.path.join(self.tmpdir, "conf")
        self.data_dir = os.path.join(self.tmpdir, "data")
        os.makedirs(self.conf_dir, exist_ok=True)
        os.makedirs(self.data_dir, exist_ok=True)
        with open(os.path.join(self.conf_dir, "zoo.cfg"), "w") as f:
            f.write("\n".join([
                "tickTime=%d" % TICK_TIME,
                "initLimit=10",
                "syncLimit=5",
                "dataDir=%s" % self.data_dir,
                "clientPort=%d" % self.port,
                "clientPortAddress=%s" % self.host,
                "maxClientCnxns=0",
                "4lw.commands.whitelist=*",
                "admin.enableServer=false",
                "",
            ]))
        with open(os.path.join(self.conf_dir, "log4j.properties"), "w") as f:
            f.write(LOG4J_PROPERTIES % os.path.join(self.tmpdir, "zookeeper.log"))

    def _serving(self):
        # ZooKeeper answers ruok before it serves sessions; srvr tells.
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as s:
                s.settimeout(1.0)
                s.sendall(b"srvr")
                data = b""
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    data += b
            return b"Mode: " in data
        except OSError:
            return False

    def _command(self):
        cp = ":".join([self.conf_dir, ZK_JAR] + ZK_CP_EXTRA)
        return [
            os.environ.get("ZK_JAVA", "java"), "-Xmx512m", "-XX:+UseSerialGC",
            "-Dzookeeper.admin.enableServer=false",
            "-Dzookeeper.DigestAuthenticationProvider.superDigest=" + SUPER_DIGEST,
            "-Dzookeeper.extendedTypesEnabled=true",
            "-Dznode.container.checkIntervalMs=%d" % CONTAINER_CHECK_INTERVAL_MS,
            "-Dzookeeper.4lw.commands.whitelist=*",
            "-Dlog4j.configuration=file:" + os.path.join(self.conf_dir, "log4j.properties"),
            "-cp", cp,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            os.path.join(self.conf_dir, "zoo.cfg"),
        ]

    def log_tail(self, n=40):
        out = super().log_tail(n)
        try:
            with open(os.path.join(self.tmpdir, "zookeeper.log"), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            out += "\n--- zookeeper.log ---\n" + "\n".join(lines[-n:])
        except OSError:
            pass
        return out


def make_server(kind, **kw):
    if kind == "corezk":
        return CoreZKServer(**kw)
    if kind == "zk" or kind.startswith("zk-"):   # "zk-2": a second, independent instance
        kw.setdefault("name", kind)
        return ZooKeeperServer(**kw)
    raise ValueError("unknown server kind %r (expected corezk or zk)" % kind)


@atexit.register
def _cleanup_all():
    for s in list(_live):
        try:
            s.stop()
        except Exception:
            pass
