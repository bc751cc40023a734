"""Checks recorded histories of ZooKeeper operations.

A history is a list of ``Op``s, one per operation a client invoked: when it was
invoked, when its answer came back (``complete``; ``None`` when the outcome is
unknown: a timeout, a lost connection), what it was and what it returned.

Three checks:

``check_linearizable(ops)``
    Every znode is an independent register (P-compositionality: a history is
    linearizable iff each key's sub-history is).  Writes are ``setData`` and
    ``create`` (a create needs the node to be absent), reads are ``getData``
    after ``sync``.  Each key is checked with the Wing & Gong search as
    improved by Lowe: walk the history's call/return entries in time order,
    tentatively linearize calls whose effect the model accepts, backtrack when
    a completed operation cannot be placed before its return, and memoise
    (set of linearized ops, register state) pairs already explored.  An op with
    an unknown outcome has no return entry: it may take effect at any point
    after its invocation, or never.  Failed ops (an error that means "not
    applied") and reads with unknown outcome are left out.

``check_sessions(ops)``
    Plain reads (no sync) are only sequentially consistent.  For each client
    (``process``), in the order it issued its operations: a read of a key never
    goes back in zxid order, a read shows every write of that key the client
    had already seen (its own writes, or writes older than anything it read),
    a read shows the zxid of the write whose value it shows, the zxid of a
    write the client makes is above everything it saw before, and a read never
    shows a value nobody wrote.

``check_write_order(ops)``
    The zxids of acknowledged writes form one order that respects real time
    (a write acknowledged before another was invoked has the smaller zxid),
    and a key's versions rise with its zxids.

Each check returns a ``Result`` (``ok``, ``violations``: readable strings,
``stats``).  ``check_all`` runs the three.  Nothing here talks to a server.
"""

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

READ = "read"
WRITE = "write"
CREATE = "create"
DELETE = "delete"

OK = "ok"
FAIL = "fail"
UNKNOWN = "unknown"

ABSENT = None  # the register state of a node that does not exist


@dataclass
class Op:
    process: Any            # the client (session) that issued it
    kind: str               # READ, WRITE, CREATE, DELETE
    key: str                # the znode path
    value: Any = None       # WRITE/CREATE: the value written; READ: the value read (None: absent)
    invoke: float = 0.0     # time.monotonic() before the request was sent
    complete: Optional[float] = None  # time.monotonic() after the reply; None: outcome unknown
    status: str = UNKNOWN   # OK, FAIL (definitely not applied) or UNKNOWN
    zxid: Optional[int] = None     # mzxid the op produced (writes) or showed (reads)
    version: Optional[int] = None  # data version it produced or showed
    synced: bool = False    # a read that followed a sync (part of the linearizable check)
    error: Optional[str] = None
    index: int = -1         # position in the history (set by History)

    def describe(self):
        when = "[%.3f, %s]" % (self.invoke, "?" if self.complete is None else "%.3f" % self.complete)
        extra = ""
        if self.zxid is not None:
            extra += " zxid=0x%x" % self.zxid
        if self.version is not None:
            extra += " v=%d" % self.version
        if self.error:
            extra += " (%s)" % self.error
        return "#%d p=%s %s %s %r %s %s%s" % (self.index, self.process, self.kind, self.key,
                                              self.value, self.status, when, extra)


class History:
    """A thread-safe recorder.  ``op = h.invoke(...)`` before sending, then exactly
    one of ``h.ok(op, ...)``, ``h.fail(op, ...)``, ``h.unknown(op, ...)``."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.lock = threading.Lock()
        self.ops: List[Op] = []

    def invoke(self, process, kind, key, value=None, synced=False):
        op = Op(process=process, kind=kind, key=key, value=value, synced=synced)
        with self.lock:
            op.index = len(self.ops)
            self.ops.append(op)
        op.invoke = self.clock()
        return op

    def ok(self, op, value=None, zxid=None, version=None, key=None):
        op.complete = self.clock()
        if op.kind == READ:
            op.value = value
        if key is not None:
            op.key = key
        op.zxid, op.version, op.status = zxid, version, OK
        return op

    def fail(self, op, error=None):
        op.complete = self.clock()
        op.status, op.error = FAIL, error
        return op

    def unknown(self, op, error=None):
        op.complete = None
        op.status, op.error = UNKNOWN, error
        return op

    def snapshot(self):
        with self.lock:
            return list(self.ops)


@dataclass
class Result:
    ok: bool = True
    violations: List[str] = field(default_factory=list)
    stats: Dict[str, Any] = field(default_factory=dict)

    def add(self, msg):
        self.ok = False
        self.violations.append(msg)

    def merge(self, other):
        if not other.ok:
            self.ok = False
        self.violations.extend(other.violations)
        for k, v in other.stats.items():
            self.stats[k] = v

    def __str__(self):
        head = "ok" if self.ok else "%d violation(s)" % len(self.violations)
        return head + "".join("\n  " + v for v in self.violations[:20])


class TooLarge(Exception):
    """The search explored more states than allowed (the history is too big)."""


# ---------------------------------------------------------------------------
# the register model

def _step(state, op):
    """(accepted, new state) for applying op to a register holding state."""
    k = op.kind
    if k == READ:
        return state == op.value, state
    if k == WRITE:
        return True, op.value
    if k == CREATE:
        return state is ABSENT, op.value
    if k == DELETE:
        return state is not ABSENT, ABSENT
    raise ValueError("unknown op kind %r" % k)


class _Entry:
    __slots__ = ("i", "call", "prev", "next", "match")

    def __init__(self, i, call):
        self.i, self.call = i, call
        self.prev = self.next = self.match = None


def _relevant(ops):
    """The ops of one key that constrain the check: completed ok ops, plus writes
    of unknown outcome whose value some read shows (an unknown write nobody read
    can always be taken as never applied: no read can sit where its value holds,
    so dropping it from any valid order leaves a valid order)."""
    read_values = set()
    for op in ops:
        if op.kind == READ and op.status == OK:
            read_values.add(_hashable(op.value))
    out = []
    for op in ops:
        if op.status == OK:
            out.append(op)
        elif op.status == UNKNOWN and op.kind in (WRITE, CREATE, DELETE):
            if op.kind == DELETE or _hashable(op.value) in read_values:
                out.append(op)
    return out


def _hashable(v):
    if isinstance(v, bytearray):
        return bytes(v)
    return v


def check_register(ops, initial=ABSENT, max_states=2_000_000):
    """WGL/Lowe search for one key.  Returns (ok, info): info has the number of
    states explored and, when not ok, the op that could not be linearized and the
    deepest linearized prefix."""
    ops = sorted(ops, key=lambda o: o.invoke)
    events = []
    for i, op in enumerate(ops):
        events.append((op.invoke, 0, i))
        if op.complete is not None and op.status == OK:
            events.append((op.complete, 1, i))
    # At equal times a call sorts before a return: the two ops count as overlapping.
    events.sort()
    head = _Entry(-1, True)
    prev = head
    calls = {}
    for t, kind, i in events:
        e = _Entry(i, kind == 0)
        if kind == 0:
            calls[i] = e
        else:
            calls[i].match = e
        e.prev = prev
        prev.next = e
        prev = e

    def lift(c):
        c.prev.next = c.next
        if c.next is not None:
            c.next.prev = c.prev
        r = c.match
        if r is not None:
            r.prev.next = r.next
            if r.next is not None:
                r.next.prev = r.prev

    def unlift(c):
        r = c.match
        if r is not None:
            r.prev.next = r
            if r.next is not None:
                r.next.prev = r
        c.prev.next = c
        if c.next is not None:
            c.next.prev = c

    values = [_hashable(op.value) for op in ops]
    state = _hashable(initial)
    linearized = 0
    cache = set()
    stack = []
    explored = 0
    best_depth, best_stuck, best_order = -1, None, []
    entry = head.next
    while entry is not None:
        if entry.call:
            op = ops[entry.i]
            accepted, new_state = _step(state, _ValueView(op, values[entry.i]))
            if accepted:
                bit = 1 << entry.i
                key = (linearized | bit, new_state)
                if key not in cache:
                    cache.add(key)
                    explored += 1
                    if explored > max_states:
                        raise TooLarge("more than %d states for key %s (%d ops)"
                                       % (max_states, ops[0].key, len(ops)))
                    stack.append((entry, state))
                    state = new_state
                    linearized |= bit
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # A completed op is not linearized by the time it returned: undo the last choice.
            if len(stack) > best_depth:
                best_depth = len(stack)
                best_stuck = ops[entry.i]
                best_order = [ops[c.i] for c, _ in stack]
            if not stack:
                return False, {"explored": explored, "stuck": best_stuck, "order": best_order,
                               "ops": ops}
            entry, state = stack.pop()
            linearized &= ~(1 << entry.i)
            unlift(entry)
            entry = entry.next
    return True, {"explored": explored}


class _ValueView:
    """An op seen by the model with its value made hashable."""
    __slots__ = ("kind", "value")

    def __init__(self, op, value):
        self.kind, self.value = op.kind, value


def _explain(key, info, limit=12):
    stuck = info["stuck"]
    lines = ["key %s is not linearizable (%d states explored)" % (key, info["explored"])]
    if stuck is not None:
        lines.append("  cannot place before its return: %s" % stuck.describe())
        order = info["order"]
        if order:
            lines.append("  deepest valid order ends with:")
            lines.extend("    " + o.describe() for o in order[-limit:])
        near = [o for o in info["ops"]
                if o.invoke <= (stuck.complete or stuck.invoke)
                and (o.complete is None or o.complete >= stuck.invoke - 1.0)]
        lines.append("  ops around it:")
        lines.extend("    " + o.describe() for o in near[-limit:])
    return "\n".join(lines)


def check_linearizable(ops, initial=None, max_states=2_000_000, reads="synced"):
    """Check every key's sub-history.  ``initial``: a dict key -> initial value
    (keys not in it start absent).  ``reads``: "synced" takes only reads marked
    ``synced`` (plain reads are only sequentially consistent), "all" takes every
    read."""
    initial = initial or {}
    res = Result()
    by_key: Dict[str, List[Op]] = {}
    for op in ops:
        if op.kind == READ and reads == "synced" and not op.synced:
            continue
        if op.status == FAIL:
            continue
        if op.key is None:  # e.g. a sequential create whose name never came back
            continue
        by_key.setdefault(op.key, []).append(op)
    t0 = time.monotonic()
    explored = 0
    checked = 0
    for key in sorted(by_key):
        kops = _relevant(by_key[key])
        if not kops:
            continue
        checked += len(kops)
        try:
            ok, info = check_register(kops, initial.get(key, ABSENT), max_states)
        except TooLarge as e:
            res.add("inconclusive: %s" % e)
            continue
        explored += info["explored"]
        if not ok:
            res.add(_explain(key, info))
    res.stats.update({"keys": len(by_key), "ops_checked": checked, "states": explored,
                      "lin_seconds": round(time.monotonic() - t0, 3)})
    return res


# ---------------------------------------------------------------------------
# sessions (plain reads) and the zxid order of writes

def _write_index(ops):
    """key -> value -> list of write ops (any status but FAIL)."""
    idx: Dict[str, Dict[Any, List[Op]]] = {}
    for op in ops:
        if op.kind in (WRITE, CREATE) and op.status != FAIL and op.key is not None:
            idx.setdefault(op.key, {}).setdefault(_hashable(op.value), []).append(op)
    return idx


def check_sessions(ops, initial=None):
    """Sequential consistency of every client's view (see the module doc).
    ``initial``: key -> (value, zxid, version) of nodes that existed before the
    history (zxid 0 if unknown)."""
    initial = initial or {}
    res = Result()
    windex = _write_index(ops)
    acked = {}  # key -> sorted list of (zxid, op) of acknowledged writes
    for op in ops:
        if op.kind in (WRITE, CREATE) and op.status == OK and op.zxid is not None:
            acked.setdefault(op.key, []).append((op.zxid, op))
    for k in acked:
        acked[k].sort(key=lambda zo: zo[0])
    # every read of one (key, value) shows the same zxid and version
    shown = {}
    by_proc: Dict[Any, List[Op]] = {}
    for op in ops:
        by_proc.setdefault(op.process, []).append(op)
    deleted = {op.key for op in ops if op.kind == DELETE and op.status != FAIL}
    n_reads = 0
    for proc, pops in by_proc.items():
        pops.sort(key=lambda o: o.invoke)
        last_key_zxid: Dict[str, int] = {}
        seen = 0
        for op in pops:
            if op.status != OK:
                continue
            if op.kind == READ:
                n_reads += 1
                k, v = op.key, _hashable(op.value)
                if v is ABSENT and k in deleted:
                    continue  # deletes are modelled by the linearizable check only
                m = op.zxid if v is not ABSENT else 0
                if m is None:
                    continue
                init = initial.get(k)
                if v is not ABSENT:
                    writers = windex.get(k, {}).get(v, [])
                    if not writers and not (init is not None and _hashable(init[0]) == v):
                        res.add("read of a value never written: %s" % op.describe())
                        continue
                    for w in writers:
                        if w.status == OK and w.zxid is not None and w.zxid != m:
                            res.add("read shows zxid 0x%x but the write of its value got 0x%x:"
                                    "\n    %s\n    %s" % (m, w.zxid, op.describe(), w.describe()))
                    if writers and all(w.invoke > op.complete for w in writers):
                        res.add("read of a value before it was written: %s\n    writer: %s"
                                % (op.describe(), writers[0].describe()))
                    prev = shown.setdefault((k, v), (m, op.version, op))
                    if (prev[0], prev[1]) != (m, op.version):
                        res.add("two reads of one value show different zxid/version:\n    %s\n    %s"
                                % (prev[2].describe(), op.describe()))
                if m < last_key_zxid.get(k, 0):
                    res.add("client %s read of %s went back from zxid 0x%x to 0x%x: %s"
                            % (proc, k, last_key_zxid[k], m, op.describe()))
                # a write of k the client had already seen (zxid <= seen) but the read misses
                for z, w in acked.get(k, []):
                    if m < z <= seen:
                        res.add("client %s read of %s misses a write it had already seen "
                                "(zxid 0x%x <= 0x%x): %s\n    missed: %s"
                                % (proc, k, z, seen, op.describe(), w.describe()))
                        break
                    if z > seen:
                        break
                last_key_zxid[k] = max(last_key_zxid.get(k, 0), m)
                seen = max(seen, m)
            elif op.kind in (WRITE, CREATE) and op.zxid is not None:
                if op.zxid <= seen:
                    res.add("client %s write got zxid 0x%x, not after 0x%x it had already seen: %s"
                            % (proc, op.zxid, seen, op.describe()))
                last_key_zxid[op.key] = max(last_key_zxid.get(op.key, 0), op.zxid)
                seen = max(seen, op.zxid)
    res.stats["session_reads"] = n_reads
    return res


def check_write_order(ops):
    """Acknowledged writes: distinct zxids, real-time order respected by the zxid
    order, a key's versions rising with its zxids."""
    res = Result()
    ws = [op for op in ops if op.kind in (WRITE, CREATE, DELETE) and op.status == OK
          and op.zxid is not None]
    by_zxid = {}
    for w in ws:
        other = by_zxid.setdefault(w.zxid, w)
        if other is not w and other.key == w.key:
            res.add("two writes of %s got zxid 0x%x:\n    %s\n    %s"
                    % (w.key, w.zxid, other.describe(), w.describe()))
    # real time: sweep writes by invocation, holding the largest zxid acknowledged before
    by_complete = sorted(ws, key=lambda o: o.complete)
    j = 0
    best = None
    for w in sorted(ws, key=lambda o: o.invoke):
        while j < len(by_complete) and by_complete[j].complete < w.invoke:
            c = by_complete[j]
            if best is None or c.zxid > best.zxid:
                best = c
            j += 1
        if best is not None and best.zxid >= w.zxid:
            res.add("write acknowledged before another was invoked has the larger zxid:\n    %s\n    %s"
                    % (best.describe(), w.describe()))
    by_key: Dict[str, List[Op]] = {}
    for w in ws:
        if w.version is not None and w.kind == WRITE:
            by_key.setdefault(w.key, []).append(w)
    for k, kws in by_key.items():
        kws.sort(key=lambda o: o.zxid)
        for a, b in zip(kws, kws[1:]):
            if b.version <= a.version:
                res.add("versions of %s do not rise with zxids:\n    %s\n    %s"
                        % (k, a.describe(), b.describe()))
    res.stats["acked_writes"] = len(ws)
    return res


def check_all(ops, initial=None, max_states=2_000_000):
    """All three checks.  ``initial``: key -> (value, zxid, version)."""
    initial = initial or {}
    res = Result()
    res.merge(check_linearizable(ops, {k: v[0] for k, v in initial.items()}, max_states))
    res.merge(check_sessions(ops, initial))
    res.merge(check_write_order(ops))
    return res


def summarize(ops):
    """Counts by kind and status, for printing."""
    c = {}
    for op in ops:
        name = op.kind + ("+sync" if op.synced else "")
        d = c.setdefault(name, {OK: 0, FAIL: 0, UNKNOWN: 0})
        d[op.status] += 1
    return ", ".join("%s %s" % (k, "/".join("%d %s" % (n, s) for s, n in v.items() if n))
                     for k, v in sorted(c.items()))


_ids = itertools.count()


def unique_value(prefix):
    """A value no other call returns (within this process)."""
    return ("%s-%d" % (prefix, next(_ids))).encode()
