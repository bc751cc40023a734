"""The client side of the fault tests: a recorded kazoo workload, a raw-client
write probe for failover times, and the end-of-test checks.

``Workload(ens, history, ...)`` runs client threads, each with its own kazoo
session on given nodes, doing (at random, with short pauses) setData of unique
values on a few register znodes, sync+getData and plain getData of them,
sequential creates and persistent creates of unique nodes, and sync+getData of
created nodes.  Every operation goes into a ``linearizability.History``:
invocation and completion time (monotonic), result, zxid and version; an
operation that timed out or lost its connection is recorded with an unknown
outcome.

``first_write_ack(nodes, ...)`` is the failover probe: a raw client that tries
the given nodes in turn with short timeouts until one acknowledges a setData.

``final_check(ens, workload)`` heals and restarts everything, then checks
that every node's tree agrees, every acknowledged create exists everywhere
with its value, every node under the test root was created by an invoked
create, sequence numbers follow czxid order, and (after appending a final
synced read of every register) that the history passes
``linearizability.check_all``.
"""

import dataclasses
import itertools
import random
import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import (BadVersionError, NoNodeError, NodeExistsError, NotEmptyError)

import linearizability as lin
import rawzk

OP_TIMEOUT = 5.0          # a client gives up on an operation after this (outcome unknown)
SESSION_TIMEOUT = 10.0    # kazoo session timeout asked for (capped at 20 ticks by the server)
DEFINITE_FAILURES = (NoNodeError, BadVersionError, NodeExistsError, NotEmptyError)
_anon = itertools.count()


def make_kazoo(hosts, timeout=SESSION_TIMEOUT, start_timeout=20.0, randomize=False):
    c = KazooClient(hosts=hosts, timeout=timeout, randomize_hosts=randomize,
                    connection_retry={"max_tries": -1, "delay": 0.05, "backoff": 1.5,
                                      "max_delay": 0.5, "max_jitter": 0.1})
    try:
        c.start(timeout=start_timeout)
    except Exception:
        stop_kazoo_all([c])
        raise
    return c


def stop_kazoo_all(clients, timeout=10.0):
    """Stop and close kazoo clients in parallel, bounded (a client of a dead
    node must not hang the test)."""
    def stop(c):
        try:
            c.stop()
        except Exception:
            pass
        try:
            c.close()
        except Exception:
            pass
    ts = [threading.Thread(target=stop, args=(c,), daemon=True) for c in clients]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()))


class Workload:
    def __init__(self, ens, history, base="/faults", n_keys=6, seed=1, pause=(0.01, 0.04)):
        self.ens = ens
        self.h = history
        self.base = base
        self.keys = ["%s/reg/k%d" % (base, i) for i in range(n_keys)]
        self.seq_parent = base + "/seq"
        self.p_parent = base + "/p"
        self.probe = base + "/probe"   # written by the failover probe, outside the history
        self.seed = seed
        self.pause = pause
        self.stop_ev = threading.Event()
        self.threads = []
        self.clients = []
        self.lock = threading.Lock()
        self.created = []      # persistent create paths invoked (any outcome)
        self.initial = {}      # register key -> (value, zxid, version)
        self.errors = []       # unexpected exceptions in workers
        self.counts = {}
        ens.cleanups.append(self.stop)  # a failing test still stops its clients

    # -- set-up
    def setup(self):
        c = make_kazoo(self.ens.hosts())
        try:
            for p in (self.base, self.base + "/reg", self.seq_parent, self.p_parent, self.probe):
                c.ensure_path(p)
            for k in self.keys:
                v = b"init"
                _, st = c.create(k, v, include_data=True)
                self.initial[k] = (v, st.mzxid, st.version)
        finally:
            stop_kazoo_all([c])

    MIX = (("set", 0.35), ("sync+read", 0.25), ("read", 0.12), ("create-seq", 0.12),
           ("create", 0.10), ("sync+read created", 0.06))
    READS_ONLY = (("sync+read", 0.8), ("read", 0.2))

    def add_clients(self, specs, name="c", mix=None):
        """specs: list of node lists; one kazoo session (and thread) per entry,
        connected to those nodes (in that order).  mix: ((op, weight), ...),
        default MIX."""
        for nodes in specs:
            idx = len(self.threads)
            hosts = ",".join(n.addr for n in nodes)
            c = make_kazoo(hosts)
            self.clients.append(c)
            t = threading.Thread(target=self._run, args=(idx, name, c, mix or self.MIX),
                                 daemon=True, name="%s%d" % (name, idx))
            self.threads.append(t)
        return self

    def start(self):
        for t in self.threads:
            if not t.is_alive() and t.ident is None:
                t.start()
        return self

    def stop(self, timeout=OP_TIMEOUT + 10):
        if self.stop_ev.is_set():
            return
        self.stop_ev.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self.threads if t.is_alive()]
        stop_kazoo_all(self.clients)
        if stuck:
            self.errors.append("worker threads did not stop: %s" % stuck)

    # -- one operation each; all bounded by OP_TIMEOUT
    def _proc(self, name, idx, c):
        """The history's process: the thread and its session (an op issued with
        no session yet gets a process of its own: it is in no session's order)."""
        cid = c.client_id
        if cid and cid[0]:
            return "%s%d/%x" % (name, idx, cid[0])
        return "%s%d/none-%d" % (name, idx, next(_anon))

    def _count(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def op_set(self, c, proc, key):
        v = lin.unique_value(proc.split("/")[0])
        op = self.h.invoke(proc, lin.WRITE, key, v)
        try:
            st = c.set_async(key, v).get(timeout=OP_TIMEOUT)
        except DEFINITE_FAILURES as e:
            return self.h.fail(op, type(e).__name__)
        except Exception as e:
            return self.h.unknown(op, type(e).__name__)
        return self.h.ok(op, zxid=st.mzxid, version=st.version)

    def op_read(self, c, proc, key, synced):
        op = self.h.invoke(proc, lin.READ, key, synced=synced)
        try:
            # sync and getData pipelined on the session: the read is ordered after the sync
            s = c.sync_async(key) if synced else None
            g = c.get_async(key)
            if s is not None:
                s.get(timeout=OP_TIMEOUT)
            data, st = g.get(timeout=OP_TIMEOUT)
        except NoNodeError:
            return self.h.ok(op, value=None)
        except Exception as e:
            return self.h.unknown(op, type(e).__name__)
        return self.h.ok(op, value=data, zxid=st.mzxid, version=st.version)

    def op_create(self, c, proc, sequential):
        tag = proc.split("/")[0]
        v = lin.unique_value(tag)
        if sequential:
            path = self.seq_parent + "/n-"
            key = None
        else:
            path = key = "%s/%s" % (self.p_parent, v.decode())
            with self.lock:
                self.created.append(path)
        op = self.h.invoke(proc, lin.CREATE, key, v)
        op.sequential = sequential
        try:
            got, st = c.create_async(path, v, sequence=sequential, include_data=True).get(
                timeout=OP_TIMEOUT)
        except NodeExistsError as e:
            return self.h.fail(op, type(e).__name__)
        except DEFINITE_FAILURES as e:
            return self.h.fail(op, type(e).__name__)
        except Exception as e:
            return self.h.unknown(op, type(e).__name__)
        return self.h.ok(op, zxid=st.czxid, version=st.version, key=got)

    def _run(self, idx, name, c, mix):
        rnd = random.Random(self.seed * 1000 + idx)
        ops, weights = zip(*mix)
        try:
            while not self.stop_ev.is_set():
                proc = self._proc(name, idx, c)
                what = rnd.choices(ops, weights)[0]
                key = rnd.choice(self.keys)
                if what == "set":
                    self.op_set(c, proc, key)
                elif what == "sync+read":
                    self.op_read(c, proc, key, synced=True)
                elif what == "read":
                    self.op_read(c, proc, key, synced=False)
                elif what == "create-seq":
                    self.op_create(c, proc, sequential=True)
                elif what == "create":
                    self.op_create(c, proc, sequential=False)
                elif what == "sync+read created":
                    with self.lock:
                        path = rnd.choice(self.created) if self.created else None
                    if path is None:
                        continue
                    self.op_read(c, proc, path, synced=True)
                else:
                    raise ValueError("unknown op %r" % what)
                self._count(what)
                time.sleep(rnd.uniform(*self.pause))
        except Exception as e:  # a bug in the workload itself: report it
            self.errors.append("worker %s%d: %r" % (name, idx, e))

    # -- results
    def acked_creates(self):
        return [op for op in self.h.snapshot()
                if op.kind == lin.CREATE and op.status == lin.OK]


# ---------------------------------------------------------------------------
# a raw client whose operations go into the history (exact timing, pipelining)

class RawRecorder:
    """One raw session on one node; its operations are recorded in `history`."""

    def __init__(self, history, node, name, timeout=OP_TIMEOUT):
        self.h = history
        self.c = rawzk.RawZK(node.addr, timeout=timeout)
        self.c.connect(timeout_ms=int(SESSION_TIMEOUT * 1000))
        self.proc = "%s/%x" % (name, self.c.session_id)

    def close(self):
        self.c.close()

    def set(self, key, value):
        op = self.h.invoke(self.proc, lin.WRITE, key, value)
        try:
            rep = self.c.set_data(key, value)
        except Exception as e:
            return self.h.unknown(op, type(e).__name__)
        if rep.err == 0:
            return self.h.ok(op, zxid=rep.value.mzxid, version=rep.value.version)
        if rep.err in (rawzk.NONODE, rawzk.BADVERSION):
            return self.h.fail(op, "err %d" % rep.err)
        return self.h.unknown(op, "err %d" % rep.err)

    def sync_read(self, key):
        """sync and getData pipelined, recorded as one linearizable read."""
        op = self.h.invoke(self.proc, lin.READ, key, synced=True)
        try:
            x1 = self.c.send_request(rawzk.OP_SYNC, rawzk.W().ustring(key).bytes())
            x2 = self.c.send_request(rawzk.OP_GETDATA, rawzk.W().ustring(key).bool(False).bytes())
            r1 = self.c.read_reply(x1)
            r2 = self.c.read_reply(x2)
        except Exception as e:
            return self.h.unknown(op, type(e).__name__)
        if r1.err != 0:
            return self.h.unknown(op, "sync err %d" % r1.err)
        if r2.err == rawzk.NONODE:
            return self.h.ok(op, value=None)
        if r2.err != 0:
            return self.h.unknown(op, "err %d" % r2.err)
        rd = rawzk.R(r2.raw)
        data = rd.buffer()
        st = rd.stat()
        return self.h.ok(op, value=data, zxid=st.mzxid, version=st.version)


def leader_overlap(old, new, since):
    """Seconds the old leader went on leading after the new one began serving
    (from the nodes' logged role changes after unix time `since`); negative: a
    gap.  None when a change is missing from the logs."""
    down = [t for t, text in old.roles() if t >= since and text == "looking for a leader"]
    up = [t for t, text in new.roles() if t >= since and text.startswith("serving clients")
          and "(Leading)" in text]
    if not down or not up:
        return None
    return down[0] - up[0]


# ---------------------------------------------------------------------------
# the failover probe

def first_write_ack(nodes, path, deadline, attempt_timeout=0.5):
    """Try the nodes in turn (new raw session each try, short timeouts) until one
    acknowledges setData(path).  Returns (monotonic time of the ack, node), or
    (None, None) at the deadline."""
    i = 0
    value = b"probe"
    while time.monotonic() < deadline:
        node = nodes[i % len(nodes)]
        i += 1
        if not node.alive() or node.paused:
            time.sleep(0.01)
            continue
        r = None
        try:
            r = rawzk.RawZK(node.addr, timeout=attempt_timeout)
            r.connect(timeout_ms=4000)
            rep = r.set_data(path, value)
            if rep.err == 0:
                t = time.monotonic()
                try:
                    r.close_session()
                except Exception:
                    pass
                return t, node
        except Exception:
            pass
        finally:
            if r is not None:
                r.close()
        time.sleep(0.01)
    return None, None


def probe_write(ens, path, nodes=None, timeout=20.0):
    """Seconds until a write through `nodes` (default: running, unpaused) is
    acknowledged, measured from now."""
    t0 = time.monotonic()
    ns = nodes or [n for n in ens.nodes.values() if n.alive() and not n.paused]
    t, _ = first_write_ack(ns, path, t0 + timeout)
    return None if t is None else t - t0


# ---------------------------------------------------------------------------
# the end-of-test checks

def walk(c, root):
    """{path: (data, czxid, mzxid, version)} of root's subtree, read on one
    connection (children pipelined)."""
    out = {}
    todo = [root]
    while todo:
        level, todo = todo, []
        reqs = [(p, c.get_async(p), c.get_children_async(p)) for p in level]
        for p, g, ch in reqs:
            try:
                data, st = g.get(timeout=OP_TIMEOUT)
                kids = ch.get(timeout=OP_TIMEOUT)
            except NoNodeError:
                continue
            out[p] = (data, st.czxid, st.mzxid, st.version)
            todo.extend((p.rstrip("/") + "/" + k) for k in kids)
    return out


def stale_canary(ops, initial):
    """Copy the history, give one final synced read the value of an acknowledged
    write that another acknowledged write replaced before the read began, and
    check that the linearizability check rejects it.  True: rejected; False:
    accepted (the checker is blind); None: no such pair in this history."""
    finals = [op for op in ops if op.process.startswith("final/") and op.status == lin.OK]
    for r in finals:
        ws = sorted((op for op in ops if op.key == r.key and op.kind == lin.WRITE
                     and op.status == lin.OK), key=lambda o: o.invoke)
        for w1 in ws:
            if any(w2.invoke > w1.complete and w2.complete < r.invoke for w2 in ws):
                mutated = []
                for op in ops:
                    if op.key != r.key:
                        continue
                    if op is r:
                        op = dataclasses.replace(op, value=w1.value)
                    mutated.append(op)
                res = lin.check_linearizable(mutated, {k: v[0] for k, v in initial.items()})
                return not res.ok
    return None


def final_check(ens, w, timeout=60.0):
    """Bring every node back, then check the end state and the history.
    Returns (linearizability Result, report dict)."""
    res = lin.Result()
    if ens.hub is not None:
        ens.heal()
    for n in ens.nodes.values():
        if n.paused:
            ens.resume(n)
        if not n.alive():
            ens.restart(n, wait=False)
    ens.wait_ready(timeout=timeout)
    # one synced read of every register at the end, from a fresh client: a lost
    # acknowledged write shows up here as a non-linearizable read
    c = make_kazoo(ens.hosts())
    try:
        for k in w.keys:
            w.op_read(c, "final/%x" % c.client_id[0], k, synced=True)
    finally:
        stop_kazoo_all([c])
    # every node's tree, after sync, until they agree (bounded)
    trees = {}
    deadline = time.monotonic() + timeout
    while True:
        trees = {}
        for sid, n in sorted(ens.nodes.items()):
            c = make_kazoo(n.addr)
            try:
                c.sync_async(w.base).get(timeout=OP_TIMEOUT)
                trees[sid] = walk(c, w.base)
            finally:
                stop_kazoo_all([c])
        first = trees[min(trees)]
        if all(t == first for t in trees.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    first_sid = min(trees)
    first = trees[first_sid]
    for sid, t in trees.items():
        if t != first:
            only_a = sorted(set(first) - set(t))[:5]
            only_b = sorted(set(t) - set(first))[:5]
            differ = sorted(p for p in set(first) & set(t) if first[p] != t[p])[:5]
            res.add("node %d's tree differs from node %d's after sync: only on %d %s, only on %d %s,"
                    " different %s" % (sid, first_sid, first_sid, only_a, sid, only_b, differ))
    # every acknowledged create exists with its value
    ops = w.h.snapshot()
    lost = []
    for op in ops:
        if op.kind == lin.CREATE and op.status == lin.OK:
            got = first.get(op.key)
            if got is None or got[0] != op.value:
                lost.append(op)
            elif got[1] != op.zxid:
                res.add("acknowledged create %s has czxid 0x%x, acknowledged with 0x%x"
                        % (op.key, got[1], op.zxid))
    for op in lost[:10]:
        res.add("acknowledged create lost: %s (now %r)" % (op.describe(), first.get(op.key)))
    # everything under the test root was created by an invoked create (or the set-up)
    invoked = {op.value for op in ops if op.kind in (lin.CREATE, lin.WRITE)}
    setup = {w.base, w.base + "/reg", w.seq_parent, w.p_parent, w.probe}
    for p, (data, czxid, mzxid, version) in first.items():
        if p in setup or p in w.keys:
            continue
        if data not in invoked:
            res.add("node %s holds %r, which no client wrote" % (p, data))
    # sequence numbers follow the creation (zxid) order, no number used twice
    seq = sorted((int(p.rsplit("-", 1)[1]), czxid, p) for p, (d, czxid, m, v) in first.items()
                 if p.startswith(w.seq_parent + "/"))
    for (n1, z1, p1), (n2, z2, p2) in zip(seq, seq[1:]):
        if not (n1 < n2 and z1 < z2):
            res.add("sequential nodes out of order: %s czxid 0x%x, %s czxid 0x%x" % (p1, z1, p2, z2))
            break
    # the history
    ops = w.h.snapshot()
    hres = lin.check_all(ops, initial=w.initial)
    res.merge(hres)
    # the checker is not blind on this very history: a final read turned stale is rejected
    canary = stale_canary(ops, w.initial)
    if canary is False:
        res.add("self-check: the checker accepted this history with a final read made stale")
    report = {
        "ops": len(ops),
        "summary": lin.summarize(ops),
        "acked_creates": sum(1 for op in ops if op.kind == lin.CREATE and op.status == lin.OK),
        "tree_nodes": len(first),
        "nodes_compared": len(trees),
        "canary_rejected": canary,
    }
    report.update(hres.stats)
    return res, report
