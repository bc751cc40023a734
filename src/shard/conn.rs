//! One client connection on a shard: framing, the connect handshake, per-session request
//! order, back-pressure, and the output queue its writer task drains.
//!
//! Owns the FIFO rule (replies leave in request order; a read behind a pending write waits for
//! it) and the connection's bounds. Never decides a write's result and never blocks the core.

use super::Shard;
use crate::admin;
use crate::node::msg::ToCommit;
use crate::proto::codes::{err, op};
use crate::proto::frame::{four_letter_word, next_frame};
use crate::proto::records::{decode_request, DecodeOutcome};
use crate::proto::{reply_empty, ConnectRequest, Id, Request};
use crate::read::{self, ReadCtx};
use crate::runtime::local::Notify;
use crate::runtime::shared::ConnStats;
use crate::sequencer::Sequencer;
use crate::tree::acl::{self, AuthInfo};
use crate::watch::ConnId;
use bytes::Bytes;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most bytes one writer syscall gathers.
const WRITE_GATHER: usize = 256 << 10;
/// Bytes read per syscall.
const READ_CHUNK: usize = 64 << 10;
/// Stop reading requests while this many reply bytes wait for the client.
const OUT_HIGH_WATER: usize = 4 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Handshake {
    Pending,
    Done,
    Refused,
}

/// A request whose reply must wait for the replies before it.
enum Slot {
    /// A write. `pending` holds it until it is forwarded to the commit core (never ahead of a
    /// queued read, so that read cannot observe it); `reply` is filled when its batch commits.
    Write { wseq: u64, pending: Option<Box<ToCommit>>, reply: Option<Bytes>, close: bool, started: Instant },
    /// A read queued behind a pending write.
    Read { xid: i32, req: Request },
    /// A reply already decided (auth, ping, errors) queued behind a pending write.
    Ready { frame: Bytes, close: bool },
}

pub struct Conn {
    pub id: ConnId,
    pub peer: SocketAddr,
    fd: i32,
    pub session: Cell<i64>,
    pub auth: RefCell<Arc<AuthInfo>>,
    out: RefCell<VecDeque<Bytes>>,
    out_bytes: Cell<usize>,
    wake_writer: Notify,
    wake_forwarder: Notify,
    progress: Notify,
    slots: RefCell<VecDeque<Slot>>,
    handshake: Cell<Handshake>,
    closing: Cell<bool>,
    touched: Cell<bool>,
    /// Number of the next write this connection sends.
    next_wseq: Cell<u64>,
    stats: Arc<ConnStats>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Conn {
    /// Queues a frame for the writer. A client that lets too much pile up is disconnected.
    pub fn push_out(&self, shard: &Shard, frame: Bytes) {
        if self.closing.get() && frame.is_empty() {
            return;
        }
        let n = self.out_bytes.get() + frame.len();
        self.out_bytes.set(n);
        self.out.borrow_mut().push_back(frame);
        self.stats.queued.store(self.out.borrow().len() as u64, Ordering::Relaxed);
        self.wake_writer.notify();
        if n > shard.cfg.max_queued_bytes_per_connection {
            eprintln!("corezk: closing {}: {} bytes queued for a client that does not read", self.peer, n);
            self.out.borrow_mut().clear();
            self.out_bytes.set(0);
            self.close(shard);
        }
    }

    /// Stops reading, lets the writer flush what is queued, then shuts the socket down.
    pub fn close(&self, _shard: &Shard) {
        if !self.closing.replace(true) {
            self.wake_writer.notify();
            self.wake_forwarder.notify();
            self.progress.notify();
        }
    }

    pub fn take_touched(&self) -> Option<i64> {
        if self.touched.replace(false) && self.session.get() != 0 {
            Some(self.session.get())
        } else {
            None
        }
    }

    pub fn connected(&self, shard: &Shard, session: i64, timeout: i32, frame: Bytes) {
        self.session.set(session);
        self.stats.session.store(session, Ordering::Relaxed);
        self.stats.timeout.store(timeout, Ordering::Relaxed);
        self.push_out(shard, frame);
        self.handshake.set(Handshake::Done);
        self.progress.notify();
    }

    pub fn refused(&self, shard: &Shard, frame: Bytes) {
        if !frame.is_empty() {
            self.push_out(shard, frame);
        }
        self.handshake.set(Handshake::Refused);
        self.close(shard);
    }

    /// The commit core answered this connection's write number `wseq`.
    pub fn write_done(&self, shard: &Shard, wseq: u64, frame: Bytes, close: bool) {
        {
            let mut slots = self.slots.borrow_mut();
            let slot = slots.iter_mut().find(|s| matches!(s, Slot::Write { wseq: w, .. } if *w == wseq));
            match slot {
                Some(Slot::Write { reply, close: c, .. }) => {
                    *reply = Some(frame);
                    *c = close;
                }
                _ => {
                    debug_assert!(false, "write reply without a pending write");
                    return;
                }
            }
        }
        self.drain(shard);
    }

    /// Sends every reply at the head of the order that is ready, serving queued reads.
    fn drain(&self, shard: &Shard) {
        loop {
            let slot = {
                let mut slots = self.slots.borrow_mut();
                match slots.front() {
                    None | Some(Slot::Write { reply: None, .. }) => break,
                    _ => slots.pop_front().unwrap(),
                }
            };
            match slot {
                Slot::Write { reply: Some(frame), close, started, .. } => {
                    self.record_latency(shard, started);
                    shard.shared.shards[shard.id].outstanding.fetch_sub(1, Ordering::Relaxed);
                    self.push_out(shard, frame);
                    if close {
                        self.close(shard);
                    }
                }
                Slot::Read { xid, req } => self.serve_read(shard, xid, &req),
                Slot::Ready { frame, close } => {
                    self.push_out(shard, frame);
                    if close {
                        self.close(shard);
                    }
                }
                Slot::Write { reply: None, .. } => unreachable!(),
            }
        }
        self.progress.notify();
    }

    fn record_latency(&self, shard: &Shard, started: Instant) {
        let us = started.elapsed().as_micros() as u64;
        shard.shared.shards[shard.id].latency.record(us);
        self.stats.latency.record(us);
        self.stats.last_latency_us.store(us, Ordering::Relaxed);
        self.stats.last_resp_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn serve_read(&self, shard: &Shard, xid: i32, req: &Request) {
        shard.catch_up();
        let tree = shard.tree();
        let mut events = Vec::new();
        let auth = self.auth.borrow().clone();
        let frame = {
            let mut watches = shard.watches.borrow_mut();
            let mut ctx =
                ReadCtx { tree: &tree, auth: &auth, session: self.session.get(), conn: self.id, watches: &mut watches };
            read::serve(&mut ctx, xid, req, &mut events)
        };
        if read::changes_watches(req) {
            shard.report_watches();
        }
        for e in events {
            self.push_out(shard, e);
        }
        self.stats.last_zxid.store(tree.last_zxid(), Ordering::Relaxed);
        self.push_out(shard, frame);
    }

    /// Sends a decided reply now, or queues it behind pending writes.
    fn reply_in_order(&self, shard: &Shard, frame: Bytes, close: bool) {
        if self.slots.borrow().is_empty() {
            self.push_out(shard, frame);
            if close {
                self.close(shard);
            }
        } else {
            self.slots.borrow_mut().push_back(Slot::Ready { frame, close });
        }
    }

    /// Auth packets take effect at once (later requests see the new identity); the reply keeps
    /// its place in the order.
    fn auth(&self, shard: &Shard, xid: i32, scheme: &str, credential: &[u8]) {
        let mut auth = (**self.auth.borrow()).clone();
        match scheme {
            "digest" => {
                let cred = String::from_utf8_lossy(credential);
                let d = acl::digest(&cred);
                if shard.cfg.super_digest.as_deref() == Some(d.as_str()) {
                    auth.is_super = true;
                }
                let id = Id { scheme: "digest".into(), id: d };
                if !auth.ids.contains(&id) {
                    auth.ids.push(id);
                }
            }
            "ip" => {
                let id = Id { scheme: "ip".into(), id: self.peer.ip().to_string() };
                if !auth.ids.contains(&id) {
                    auth.ids.push(id);
                }
            }
            _ => {
                eprintln!("corezk: {}: auth with unsupported scheme {scheme:?}", self.peer);
                self.reply_in_order(shard, reply_empty(xid, 0, err::AUTH_FAILED), true);
                return;
            }
        }
        *self.auth.borrow_mut() = Arc::new(auth);
        self.reply_in_order(shard, reply_empty(xid, 0, err::OK), false);
    }

    /// The next write to send to the commit core, in request order. A write with a queued read
    /// before it is fenced: the commit core puts it in a later batch than the writes that read
    /// waits for, so the read (served at the end of that batch) cannot see it.
    fn next_forwardable(&self) -> Option<ToCommit> {
        let mut slots = self.slots.borrow_mut();
        let mut read_before = false;
        for s in slots.iter_mut() {
            match s {
                Slot::Read { .. } => read_before = true,
                Slot::Write { pending, .. } if pending.is_some() => {
                    let mut msg = *pending.take().expect("checked");
                    if let ToCommit::Write { fence, .. } = &mut msg {
                        *fence = read_before;
                    }
                    return Some(msg);
                }
                _ => {}
            }
        }
        None
    }

    /// Handles one request frame (RequestHeader + record).
    fn request(&self, shard: &Shard, frame: &[u8]) {
        if frame.len() < 8 {
            self.close(shard);
            return;
        }
        let xid = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let opcode = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        shard.shared.shards[shard.id].received.fetch_add(1, Ordering::Relaxed);
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        self.stats.last_op.store(opcode, Ordering::Relaxed);
        if xid >= 0 {
            self.stats.last_cxid.store(xid as i64, Ordering::Relaxed);
        }
        if opcode != op::AUTH {
            self.touched.set(true);
        }
        let zxid = shard.tree.borrow().last_zxid();
        let req = match decode_request(opcode, &frame[8..]) {
            DecodeOutcome::Ok(r) => r,
            DecodeOutcome::Malformed => {
                return self.reply_in_order(shard, reply_empty(xid, zxid, err::MARSHALLING_ERROR), false);
            }
            DecodeOutcome::Unknown => {
                eprintln!("corezk: {}: unknown op code {opcode}, closing", self.peer);
                return self.reply_in_order(shard, reply_empty(xid, zxid, err::UNIMPLEMENTED), true);
            }
        };
        match req {
            // Clients exempt pings from reply order; answering at once keeps a session alive
            // while a write of its waits (e.g. for the disk).
            Request::Ping => self.push_out(shard, reply_empty(-2, zxid, err::OK)),
            Request::Check { .. } => self.reply_in_order(shard, reply_empty(xid, zxid, err::UNIMPLEMENTED), true),
            Request::Auth { scheme, auth } => self.auth(shard, xid, &scheme, &auth),
            Request::Reconfig => self.reply_in_order(shard, reply_empty(xid, zxid, err::RECONFIG_DISABLED), false),
            Request::Sasl => self.reply_in_order(shard, reply_empty(xid, zxid, err::UNIMPLEMENTED), false),
            req if Sequencer::is_write(&req) => {
                let wseq = self.next_wseq.get();
                self.next_wseq.set(wseq + 1);
                let msg = ToCommit::Write {
                    shard: shard.id,
                    conn: self.id,
                    wseq,
                    session: self.session.get(),
                    xid,
                    req,
                    auth: self.auth.borrow().clone(),
                    fence: false,
                };
                self.slots.borrow_mut().push_back(Slot::Write {
                    wseq,
                    pending: Some(Box::new(msg)),
                    reply: None,
                    close: false,
                    started: Instant::now(),
                });
                shard.shared.shards[shard.id].outstanding.fetch_add(1, Ordering::Relaxed);
                self.wake_forwarder.notify();
            }
            req => {
                debug_assert!(read::is_read(&req));
                if self.slots.borrow().is_empty() {
                    self.serve_read(shard, xid, &req);
                } else {
                    self.slots.borrow_mut().push_back(Slot::Read { xid, req });
                }
            }
        }
    }

    /// Waits until the connection may take another request (bounded in-flight work).
    async fn wait_for_room(&self, shard: &Shard) {
        loop {
            let wait = self.progress.notified();
            let busy = self.slots.borrow().len() >= shard.cfg.max_outstanding_per_session
                || self.out_bytes.get() > OUT_HIGH_WATER;
            if !busy || self.closing.get() {
                return;
            }
            wait.await;
        }
    }
}

/// A connection's input buffer. Its memory is zeroed once when it grows and then reused, so a
/// read never pays for clearing the space it reads into.
struct InBuf {
    data: Vec<u8>,
    len: usize,
}

impl InBuf {
    fn new() -> InBuf {
        InBuf { data: Vec::new(), len: 0 }
    }

    fn filled(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// Drops the first `n` bytes.
    fn consume(&mut self, n: usize) {
        self.data.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Reads until at least `want` bytes are buffered. False on EOF or error.
    async fn fill<R: futures_lite::AsyncRead + Unpin>(&mut self, rd: &mut R, want: usize) -> bool {
        while self.len < want {
            if self.data.len() < self.len + READ_CHUNK {
                self.data.resize(self.len + READ_CHUNK, 0);
            }
            match rd.read(&mut self.data[self.len..]).await {
                Ok(0) => return false,
                Ok(n) => self.len += n,
                Err(e) => {
                    use std::io::ErrorKind::*;
                    if !matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof) {
                        // Not the client going away: say why its connection ends.
                        eprintln!("corezk: reading from a client failed ({e}); closing its connection");
                    }
                    return false;
                }
            }
        }
        true
    }
}

async fn writer<W: futures_lite::AsyncWrite + Unpin>(conn: Rc<Conn>, shard: Rc<Shard>, mut wr: W) {
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_GATHER);
    loop {
        let wait = conn.wake_writer.notified();
        let mut frames = 0u64;
        {
            let mut out = conn.out.borrow_mut();
            while let Some(f) = out.front() {
                if !buf.is_empty() && buf.len() + f.len() > WRITE_GATHER {
                    break;
                }
                buf.extend_from_slice(f);
                conn.out_bytes.set(conn.out_bytes.get() - f.len());
                out.pop_front();
                frames += 1;
            }
        }
        if buf.is_empty() {
            if conn.closing.get() {
                break;
            }
            wait.await;
            continue;
        }
        if let Err(e) = wr.write_all(&buf).await {
            use std::io::ErrorKind::*;
            if !matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe) {
                eprintln!("corezk: {}: writing to the client failed ({e}); closing", conn.peer);
            }
            conn.closing.set(true);
            break;
        }
        buf.clear();
        shard.shared.shards[shard.id].sent.fetch_add(frames, Ordering::Relaxed);
        conn.stats.sent.fetch_add(frames, Ordering::Relaxed);
        conn.progress.notify();
    }
    conn.progress.notify();
    // Wakes the reader if it is blocked in a read.
    unsafe {
        libc::shutdown(conn.fd, libc::SHUT_RDWR);
    }
}

/// Forwards the connection's writes to the commit core in request order.
async fn forwarder(conn: Rc<Conn>, shard: Rc<Shard>) {
    loop {
        let wait = conn.wake_forwarder.notified();
        while let Some(msg) = conn.next_forwardable() {
            if shard.to_commit.send(msg).await.is_err() {
                conn.close(&shard);
                return;
            }
        }
        if conn.closing.get() {
            return;
        }
        wait.await;
    }
}

/// Serves one accepted connection to the end.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr, id: ConnId) {
    let _ = stream.set_nodelay(true);
    let stats = Arc::new(ConnStats::new(peer, now_ms()));
    let conn = Rc::new(Conn {
        id,
        peer,
        fd: stream.as_raw_fd(),
        session: Cell::new(0),
        auth: RefCell::new(Arc::new(AuthInfo::new(peer.ip()))),
        out: RefCell::new(VecDeque::new()),
        out_bytes: Cell::new(0),
        wake_writer: Notify::new(),
        wake_forwarder: Notify::new(),
        progress: Notify::new(),
        slots: RefCell::new(VecDeque::new()),
        handshake: Cell::new(Handshake::Pending),
        closing: Cell::new(false),
        touched: Cell::new(false),
        next_wseq: Cell::new(0),
        stats: stats.clone(),
    });
    shard.conns.borrow_mut().insert(id, conn.clone());
    shard.shared.conns.lock().unwrap().insert((shard.id, id), stats);
    shard.shared.shards[shard.id].connections.fetch_add(1, Ordering::Relaxed);
    let (mut rd, wr) = futures_lite::io::split(stream);
    let writer_task = glommio::spawn_local(writer(conn.clone(), shard.clone(), wr));
    let forwarder_task = glommio::spawn_local(forwarder(conn.clone(), shard.clone()));
    read_loop(&shard, &conn, &mut rd).await;
    conn.close(&shard);
    writer_task.await;
    forwarder_task.await;
    shard.forget(&conn);
}

/// Reads the first frame: answers a four-letter word (then `None`), or decodes the
/// ConnectRequest. Pipelined requests after it stay in `buf`.
async fn first_frame<R: futures_lite::AsyncRead + Unpin>(
    shard: &Shard,
    conn: &Conn,
    rd: &mut R,
    buf: &mut InBuf,
    max: usize,
) -> Option<ConnectRequest> {
    if !buf.fill(rd, 4).await {
        return None;
    }
    if let Some(cmd) = four_letter_word(buf.filled()) {
        let text = admin::respond(cmd, shard).await;
        conn.push_out(shard, Bytes::from(text));
        return None;
    }
    let (body, used) = loop {
        match next_frame(buf.filled(), max) {
            Ok(Some((r, used))) => break (r, used),
            Ok(None) => {
                let want = buf.len + 1;
                if !buf.fill(rd, want).await {
                    return None;
                }
            }
            Err(_) => return None,
        }
    };
    let Ok(req) = ConnectRequest::decode(&buf.filled()[body]) else {
        eprintln!("corezk: {}: malformed ConnectRequest, closing", conn.peer);
        return None;
    };
    buf.consume(used);
    Some(req)
}

async fn read_loop<R: futures_lite::AsyncRead + Unpin>(shard: &Shard, conn: &Conn, rd: &mut R) {
    let max = shard.cfg.jute_max_buffer;
    let mut buf = InBuf::new();
    // A client gets a bounded time to send its first frame (or a four-letter word).
    let limit = Duration::from_millis(shard.cfg.session_timeout_bounds().1 as u64);
    let first = glommio::timer::timeout(limit, async { Ok(first_frame(shard, conn, rd, &mut buf, max).await) }).await;
    let Ok(Some(req)) = first else { return };
    if shard.to_commit.send(ToCommit::Connect { shard: shard.id, conn: conn.id, req }).await.is_err() {
        return;
    }
    loop {
        let wait = conn.progress.notified();
        match conn.handshake.get() {
            Handshake::Pending if !conn.closing.get() => wait.await,
            Handshake::Done => break,
            _ => return,
        }
    }
    let mut start = 0;
    loop {
        loop {
            match next_frame(&buf.filled()[start..], max) {
                Ok(Some((r, used))) => {
                    let r = (r.start + start)..(r.end + start);
                    conn.request(shard, &buf.filled()[r]);
                    start += used;
                    if conn.closing.get() {
                        return;
                    }
                    conn.wait_for_room(shard).await;
                    if conn.closing.get() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    eprintln!("corezk: {}: bad frame length {e:?}, closing", conn.peer);
                    return;
                }
            }
        }
        buf.consume(start);
        start = 0;
        // Reads that complete at once never suspend this task: give the core back when the
        // time slice is up, so other connections and the commit core run.
        crate::runtime::slice::yield_if_slice_over().await;
        let want = buf.len + 1;
        if !buf.fill(rd, want).await {
            return;
        }
    }
}
