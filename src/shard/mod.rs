//! A shard: one core's connections, sessions' I/O, local reads, and watches.
//!
//! Owns accepting connections on its core, the per-connection request order, serving reads
//! from its current tree snapshot, forwarding writes to the commit core, and applying committed
//! batches (watch events first, then the new snapshot, then write replies). Never writes the
//! tree and never decides a write's outcome.

mod conn;

use crate::config::Config;
use crate::node::msg::{Committed, ReplyKind, ToCommit, ToShard};
use crate::proto::codes::perm;
use crate::proto::encode_notification;
use crate::runtime::shared::Shared;
use crate::tree::acl;
use crate::tree::Tree;
use crate::watch::{ConnId, Fired, WatchTable};
use conn::Conn;
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often a shard reports its sessions' activity to the commit core.
const TOUCH_INTERVAL: Duration = Duration::from_millis(250);
/// How often a shard checks whether a four-letter word wants its watch listing.
const LISTING_POLL: Duration = Duration::from_millis(10);

pub struct Shard {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub cfg: Arc<Config>,
    tree: RefCell<Arc<Tree>>,
    conns: RefCell<HashMap<ConnId, Rc<Conn>>>,
    by_session: RefCell<HashMap<i64, ConnId>>,
    watches: RefCell<WatchTable>,
    to_commit: ConnectedSender<ToCommit>,
    next_conn: Cell<u64>,
    /// Committed batches taken from this shard's inbox so far.
    applied: Cell<u64>,
    /// True while a batch is being applied (reads served then use that batch's snapshot).
    applying: Cell<bool>,
    /// The commit core's client generation this shard has acted on (see `Shared::close_clients`).
    client_generation: Cell<u64>,
}

impl Shard {
    pub fn tree(&self) -> Arc<Tree> {
        self.tree.borrow().clone()
    }

    fn conn(&self, id: ConnId) -> Option<Rc<Conn>> {
        self.conns.borrow().get(&id).cloned()
    }

    /// Applies every batch the commit core has published to this shard, so that a read served
    /// now sees every write acknowledged anywhere (watch events are queued before the data).
    pub fn catch_up(&self) {
        let generation = self.shared.client_generation();
        if generation != self.client_generation.get() {
            self.client_generation.set(generation);
            // The node stopped serving (it lost its leader or its quorum): clients reconnect,
            // here once it serves again or elsewhere.
            let all: Vec<Rc<Conn>> = self.conns.borrow().values().cloned().collect();
            for c in all {
                c.close(self);
            }
        }
        let published = self.shared.published();
        if self.applying.get() || published == self.applied.get() {
            return;
        }
        self.applying.set(true);
        while self.applied.get() < published {
            let c = self.shared.inboxes[self.id].pop().expect("a published batch is in every inbox");
            self.applied.set(self.applied.get() + 1);
            self.apply_batch(&c);
        }
        self.applying.set(false);
    }

    /// Applies one committed batch: events, then the snapshot, then replies and closes.
    fn apply_batch(&self, c: &Committed) {
        let mut fired: Vec<Fired> = Vec::new();
        for (zxid, trig) in &c.triggers {
            fired.clear();
            self.watches.borrow_mut().trigger(trig, &mut fired);
            for f in &fired {
                let Some(conn) = self.conn(f.conn) else { continue };
                if !acl::allowed(&trig.acl, perm::READ, &conn.auth.borrow()) {
                    continue;
                }
                conn.push_out(self, encode_notification(*zxid, f.event_type, &f.path));
            }
        }
        *self.tree.borrow_mut() = c.tree.clone();
        let stats = &self.shared.shards[self.id];
        stats.last_zxid.store(c.tree.last_zxid(), Ordering::Relaxed);
        stats.node_count.store(c.tree.node_count(), Ordering::Relaxed);
        stats.data_size.store(c.tree.approximate_data_size(), Ordering::Relaxed);
        let part = &c.parts[self.id];
        for r in &part.replies {
            let Some(conn) = self.conn(r.conn) else { continue };
            match &r.kind {
                ReplyKind::Write { wseq, close } => conn.write_done(self, *wseq, r.frame.clone(), *close),
                ReplyKind::Connected { session, timeout } => {
                    if let Some(old) = self.by_session.borrow_mut().insert(*session, conn.id) {
                        if old != conn.id {
                            if let Some(o) = self.conn(old) {
                                o.close(self);
                            }
                        }
                    }
                    conn.connected(self, *session, *timeout, r.frame.clone());
                }
                ReplyKind::ConnectRefused => conn.refused(self, r.frame.clone()),
            }
        }
        for id in &part.close {
            if let Some(conn) = self.conn(*id) {
                conn.close(self);
            }
        }
        for sid in &c.closed_sessions {
            let id = self.by_session.borrow_mut().remove(sid);
            if let Some(conn) = id.and_then(|id| self.conn(id)) {
                conn.close(self);
            }
        }
        if !c.triggers.is_empty() {
            self.report_watches();
        }
    }

    fn forget(&self, conn: &Conn) {
        self.conns.borrow_mut().remove(&conn.id);
        {
            let mut bs = self.by_session.borrow_mut();
            let sid = conn.session.get();
            if bs.get(&sid) == Some(&conn.id) {
                bs.remove(&sid);
            }
        }
        self.watches.borrow_mut().remove_conn(conn.id);
        self.report_watches();
        self.shared.conns.lock().unwrap().remove(&(self.id, conn.id));
        self.shared.release(conn.peer.ip());
        self.shared.shards[self.id].connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Publishes this shard's data-watch listing if a four-letter word asked for one.
    fn answer_listing(&self) {
        let wanted = self.shared.listing_wanted.load(Ordering::Acquire);
        let mut slot = self.shared.listings[self.id].lock().unwrap();
        if slot.0 >= wanted {
            return;
        }
        let conns = self.conns.borrow();
        let listing = self
            .watches
            .borrow()
            .data_listing()
            .into_iter()
            .map(|(c, p)| (conns.get(&c).map_or(0, |c| c.session.get()), p.to_string()))
            .collect();
        *slot = (wanted, listing);
    }

    /// Publishes this shard's watch count (for `mntr`).
    pub fn report_watches(&self) {
        self.shared.shards[self.id].watch_total.store(self.watches.borrow().total(), Ordering::Relaxed);
    }
}

/// Runs shard `id` until the process exits: accept loop, batch dispatcher, touch reporter.
pub async fn run(
    id: usize,
    shared: Arc<Shared>,
    to_commit: SharedSender<ToCommit>,
    from_commit: SharedReceiver<ToShard>,
    listener: std::os::fd::RawFd,
    addr: SocketAddr,
) -> std::io::Result<()> {
    let cfg = shared.cfg.clone();
    // A duplicate of the one client-port socket (`runtime::port`): every shard accepts from it.
    let listener = unsafe { <glommio::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(listener) };
    let to_commit = to_commit.connect().await;
    let from_commit = from_commit.connect().await;
    let shard = Rc::new(Shard {
        id,
        shared: shared.clone(),
        cfg,
        tree: RefCell::new(Arc::new(Tree::new())),
        conns: RefCell::new(HashMap::new()),
        by_session: RefCell::new(HashMap::new()),
        watches: RefCell::new(WatchTable::new()),
        to_commit,
        next_conn: Cell::new(1),
        applied: Cell::new(0),
        applying: Cell::new(false),
        client_generation: Cell::new(shared.client_generation()),
    });
    {
        let shard = shard.clone();
        // Committed batches carry write replies: a favoured queue of their own (busy readers yield
        // it the core every `slice::SLICE`).
        let tq = glommio::executor().create_task_queue(
            glommio::Shares::Static(2000),
            glommio::Latency::NotImportant,
            "batches",
        );
        glommio::spawn_local_into(
            async move {
                while let Some(ToShard::Doorbell) = from_commit.recv().await {
                    shard.catch_up();
                }
            },
            tq,
        )
        .expect("the batch task queue exists")
        .detach();
    }
    {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(LISTING_POLL).await;
                if shard.shared.listing_wanted.load(Ordering::Relaxed) > 0 {
                    shard.answer_listing();
                }
            }
        })
        .detach();
    }
    {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(TOUCH_INTERVAL).await;
                let sessions: Vec<i64> = shard.conns.borrow().values().filter_map(|c| c.take_touched()).collect();
                shard.report_watches();
                if !sessions.is_empty() && shard.to_commit.send(ToCommit::Touch { sessions }).await.is_err() {
                    return;
                }
            }
        })
        .detach();
    }
    if shared.standalone {
        // Connections wait in the kernel's backlog until the node serves (milliseconds).
        while !shared.serving() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
    eprintln!("corezk: shard {id} listening on {addr}");
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("corezk: shard {id}: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else { continue };
        if !shared.admit(peer.ip()) {
            eprintln!(
                "corezk: too many connections from {} (maxClientCnxns={})",
                peer.ip(),
                shared.cfg.max_client_cnxns
            );
            drop(stream);
            continue;
        }
        let cid = shard.next_conn.get();
        shard.next_conn.set(cid + 1);
        let shard = shard.clone();
        glommio::spawn_local(conn::serve(shard, stream, peer, cid)).detach();
    }
}
