//! Connections between the servers of an ensemble: the election port (notifications, one
//! outgoing connection per peer, datagram-like: dropped when the peer is away) and the quorum
//! port (a learner dials its leader; ZAB messages both ways, in order).
//!
//! Owns listening, dialing, the identity handshake, framing and per-connection send queues.
//! Only configured servers are admitted: the acceptor sends a random nonce, the dialer answers
//! with its server id (and, when `peerSecret` is set, a SHA-1 MAC of the secret, the nonce and
//! its id); a wrong magic (e.g. a Java ZooKeeper), an unknown id, a source address other than
//! the server's configured one, or a bad MAC closes the connection with a log line. Decoding a
//! peer's bytes never panics. Makes no protocol decision: every message goes to the node.

use crate::commit::Event;
use crate::config::{Config, ServerSpec};
use crate::runtime::local::{LocalQueue, Notify};
use crate::zab::msg::{self, Notification, QuorumMsg};
use crate::zab::{ConnId, Input, NodeId};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use sha1::{Digest, Sha1};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

const MAGIC: [u8; 4] = *b"CZKP";
const VERSION: u16 = 1;
const KIND_ELECTION: u8 = 1;
const KIND_QUORUM: u8 = 2;
/// The acceptor's greeting: magic, version, nonce.
const GREETING: usize = 4 + 2 + 16;
/// The dialer's hello: magic, version, kind, server id, MAC.
const HELLO: usize = 4 + 2 + 1 + 4 + 20;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const DIAL_TIMEOUT: Duration = Duration::from_millis(500);
/// Bytes queued for one quorum connection before it is closed as too slow.
const QUEUE_BYTES_MAX: usize = 1 << 30;
/// Election notifications queued for a peer that is away (older ones are dropped).
const ELECTION_QUEUE_MAX: usize = 16;
/// Pause between dial attempts of an election connection.
const ELECTION_REDIAL: Duration = Duration::from_millis(100);

/// One open quorum connection's sending side.
struct Conn {
    peer: NodeId,
    out: RefCell<VecDeque<Vec<u8>>>,
    out_bytes: Cell<usize>,
    wake: Notify,
    closed: Cell<bool>,
}

/// The election sending side towards one peer.
struct ElectionOut {
    queue: RefCell<VecDeque<Vec<u8>>>,
    wake: Notify,
}

pub struct PeerNet {
    id: NodeId,
    servers: BTreeMap<NodeId, ServerSpec>,
    secret: Option<Vec<u8>>,
    events: Rc<LocalQueue<Event>>,
    next_conn: Cell<ConnId>,
    conns: RefCell<BTreeMap<ConnId, Rc<Conn>>>,
    election: BTreeMap<NodeId, Rc<ElectionOut>>,
}

fn mac(secret: Option<&[u8]>, nonce: &[u8], kind: u8, id: NodeId) -> [u8; 20] {
    let Some(secret) = secret else { return [0; 20] };
    let mut h = Sha1::new();
    h.update(secret);
    h.update(nonce);
    h.update([kind]);
    h.update(id.to_be_bytes());
    h.finalize().into()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(4 + body.len());
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// Reads one length-prefixed frame; `None` at EOF, an error for a bad length.
async fn read_frame<R: futures_lite::AsyncRead + Unpin>(rd: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > msg::FRAME_MAX {
        return Err(std::io::Error::other(format!("a frame of {n} bytes is over the limit")));
    }
    let mut body = vec![0u8; n];
    rd.read_exact(&mut body).await?;
    Ok(Some(body))
}

impl PeerNet {
    /// Binds the quorum and election ports of this server and starts the election senders.
    pub fn start(cfg: &Config, id: NodeId, events: Rc<LocalQueue<Event>>) -> Result<Rc<PeerNet>, String> {
        let servers: BTreeMap<NodeId, ServerSpec> = cfg.ensemble()?.into_iter().map(|s| (s.id, s)).collect();
        let me = servers.get(&id).ok_or_else(|| format!("server.{id} is not in the configuration"))?.clone();
        let secret = cfg.peer_secret.clone().map(|s| s.into_bytes());
        let election = servers
            .keys()
            .filter(|&&p| p != id)
            .map(|&p| (p, Rc::new(ElectionOut { queue: RefCell::new(VecDeque::new()), wake: Notify::new() })))
            .collect();
        let net = Rc::new(PeerNet {
            id,
            servers,
            secret,
            events,
            next_conn: Cell::new(1),
            conns: RefCell::new(BTreeMap::new()),
            election,
        });
        let bind = |addr: SocketAddr, what: &str| {
            let any = SocketAddr::new(
                if addr.is_ipv4() { "0.0.0.0".parse().unwrap() } else { "::".parse().unwrap() },
                addr.port(),
            );
            let at = if cfg.quorum_listen_on_all_ips { any } else { addr };
            TcpListener::bind(at).map_err(|e| format!("cannot listen on the {what} port {at}: {e}"))
        };
        let quorum = bind(me.quorum, "quorum")?;
        let election_l = bind(me.election, "election")?;
        eprintln!("corezk: server {id}: quorum port {}, election port {}", me.quorum, me.election);
        glommio::spawn_local(net.clone().accept_loop(quorum, KIND_QUORUM)).detach();
        glommio::spawn_local(net.clone().accept_loop(election_l, KIND_ELECTION)).detach();
        for &p in net.election.keys() {
            glommio::spawn_local(net.clone().election_sender(p)).detach();
        }
        Ok(net)
    }

    fn push(&self, input: Input) {
        self.events.push_now(Event::Peer(input));
    }

    fn conn_id(&self) -> ConnId {
        let c = self.next_conn.get();
        self.next_conn.set(c + 1);
        c
    }

    /// Sends an election notification (dropped if the peer stays away).
    pub fn notify(&self, to: NodeId, n: Notification) {
        if let Some(out) = self.election.get(&to) {
            let mut q = out.queue.borrow_mut();
            if q.len() >= ELECTION_QUEUE_MAX {
                q.pop_front();
            }
            q.push_back(frame(&msg::encode_notification(&n)));
            drop(q);
            out.wake.notify();
        }
    }

    /// Queues a quorum message on a connection (silently dropped if it is gone: the node hears
    /// of that through `Disconnected`).
    pub fn send(&self, _to: NodeId, conn: ConnId, m: QuorumMsg) {
        let Some(c) = self.conns.borrow().get(&conn).cloned() else { return };
        let f = frame(&msg::encode_quorum(&m));
        c.out_bytes.set(c.out_bytes.get() + f.len());
        c.out.borrow_mut().push_back(f);
        c.wake.notify();
        if c.out_bytes.get() > QUEUE_BYTES_MAX {
            eprintln!(
                "corezk: server {}: {} bytes queued on the quorum connection; closing it",
                c.peer,
                c.out_bytes.get()
            );
            self.close(conn);
        }
    }

    pub fn close(&self, conn: ConnId) {
        if let Some(c) = self.conns.borrow_mut().remove(&conn) {
            c.closed.set(true);
            c.wake.notify();
        }
    }

    /// Dials a leader's quorum port; the node hears `Connected` or `Disconnected`.
    pub fn dial(self: &Rc<Self>, leader: NodeId) {
        let net = self.clone();
        glommio::spawn_local(async move {
            let conn = net.conn_id();
            match net.dial_to(leader, KIND_QUORUM).await {
                Ok(stream) => {
                    net.run_quorum(stream, leader, conn, true);
                }
                Err(e) => {
                    eprintln!("corezk: cannot reach server {leader}'s quorum port: {e}");
                    net.push(Input::Disconnected { peer: leader, conn });
                }
            }
        })
        .detach();
    }

    async fn dial_to(&self, peer: NodeId, kind: u8) -> Result<TcpStream, String> {
        let spec = self.servers.get(&peer).ok_or("unknown server")?;
        let addr = if kind == KIND_QUORUM { spec.quorum } else { spec.election };
        let mut s = TcpStream::connect_timeout(addr, DIAL_TIMEOUT).await.map_err(|e| e.to_string())?;
        let _ = s.set_nodelay(true);
        let hello = async {
            let mut g = [0u8; GREETING];
            s.read_exact(&mut g).await.map_err(|e| e.to_string())?;
            if g[0..4] != MAGIC || u16::from_be_bytes([g[4], g[5]]) != VERSION {
                return Err("not a corezk server (bad greeting)".to_string());
            }
            let mut h = Vec::with_capacity(HELLO);
            h.extend_from_slice(&MAGIC);
            h.extend_from_slice(&VERSION.to_be_bytes());
            h.push(kind);
            h.extend_from_slice(&self.id.to_be_bytes());
            h.extend_from_slice(&mac(self.secret.as_deref(), &g[6..], kind, self.id));
            s.write_all(&h).await.map_err(|e| e.to_string())
        };
        glommio::timer::timeout(HANDSHAKE_TIMEOUT, async { Ok(hello.await) })
            .await
            .map_err(|e| e.to_string())?
            .map(|()| s)
    }

    async fn accept_loop(self: Rc<Self>, listener: TcpListener, kind: u8) {
        loop {
            let stream = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("corezk: accept on a peer port failed: {e}");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let net = self.clone();
            glommio::spawn_local(async move {
                let peer_addr = stream.peer_addr().ok();
                match net.admit(stream, kind).await {
                    Ok((stream, id)) => {
                        if kind == KIND_QUORUM {
                            let conn = net.conn_id();
                            net.run_quorum(stream, id, conn, false);
                        } else {
                            net.read_election(stream, id).await;
                        }
                    }
                    Err(e) => eprintln!("corezk: refused a peer connection from {peer_addr:?}: {e}"),
                }
            })
            .detach();
        }
    }

    /// The acceptor's side of the handshake: returns the peer's server id.
    async fn admit(&self, mut s: TcpStream, kind: u8) -> Result<(TcpStream, NodeId), String> {
        let _ = s.set_nodelay(true);
        let mut nonce = [0u8; 16];
        getrandom::getrandom(&mut nonce).map_err(|e| format!("no randomness: {e}"))?;
        let ip = s.peer_addr().map(|a| a.ip()).map_err(|e| e.to_string())?;
        let run = async {
            let mut g = Vec::with_capacity(GREETING);
            g.extend_from_slice(&MAGIC);
            g.extend_from_slice(&VERSION.to_be_bytes());
            g.extend_from_slice(&nonce);
            s.write_all(&g).await.map_err(|e| e.to_string())?;
            let mut h = [0u8; HELLO];
            s.read_exact(&mut h).await.map_err(|e| format!("no hello: {e}"))?;
            if h[0..4] != MAGIC {
                return Err("not a corezk server (a ZooKeeper server of another kind?)".to_string());
            }
            if u16::from_be_bytes([h[4], h[5]]) != VERSION || h[6] != kind {
                return Err(format!("protocol version {} kind {}", u16::from_be_bytes([h[4], h[5]]), h[6]));
            }
            let id = u32::from_be_bytes([h[7], h[8], h[9], h[10]]);
            let spec = self.servers.get(&id).ok_or_else(|| format!("server id {id} is not in the configuration"))?;
            if id == self.id {
                return Err("a peer claims this server's own id".into());
            }
            if !same_host(spec, ip) {
                return Err(format!("server {id} is configured at {}, not {ip}", spec.quorum.ip()));
            }
            if h[11..31] != mac(self.secret.as_deref(), &nonce, kind, id) {
                return Err(format!("server {id}: wrong peerSecret"));
            }
            Ok(id)
        };
        let id =
            glommio::timer::timeout(HANDSHAKE_TIMEOUT, async { Ok(run.await) }).await.map_err(|e| e.to_string())??;
        Ok((s, id))
    }

    /// Registers a quorum connection and starts its reader and writer.
    fn run_quorum(self: &Rc<Self>, stream: TcpStream, peer: NodeId, conn: ConnId, dialed: bool) {
        let c = Rc::new(Conn {
            peer,
            out: RefCell::new(VecDeque::new()),
            out_bytes: Cell::new(0),
            wake: Notify::new(),
            closed: Cell::new(false),
        });
        self.conns.borrow_mut().insert(conn, c.clone());
        if dialed {
            self.push(Input::Connected { peer, conn });
        }
        let (mut rd, mut wr) = futures_lite::io::split(stream);
        let net = self.clone();
        let writer = {
            let c = c.clone();
            glommio::spawn_local(async move {
                loop {
                    let wait = c.wake.notified();
                    let next = c.out.borrow_mut().pop_front();
                    match next {
                        Some(f) => {
                            c.out_bytes.set(c.out_bytes.get() - f.len());
                            if wr.write_all(&f).await.is_err() {
                                c.closed.set(true);
                                break;
                            }
                        }
                        None if c.closed.get() => break,
                        None => wait.await,
                    }
                }
                let _ = wr.close().await;
            })
        };
        glommio::spawn_local(async move {
            let reason = loop {
                if c.closed.get() {
                    break None;
                }
                let read = futures_lite::future::or(async { Some(read_frame(&mut rd).await) }, async {
                    // Wake the reader when the connection is closed from this side.
                    loop {
                        let w = c.wake.notified();
                        if c.closed.get() {
                            return None;
                        }
                        w.await;
                    }
                })
                .await;
                match read {
                    None => break None,
                    Some(Ok(Some(body))) => match msg::decode_quorum(&body) {
                        Ok(m) => net.push(Input::Message { from: peer, conn, msg: m }),
                        Err(e) => break Some(format!("bad message {e:?}")),
                    },
                    Some(Ok(None)) => break None,
                    Some(Err(e)) => break Some(e.to_string()),
                }
            };
            if let Some(r) = reason {
                eprintln!("corezk: quorum connection with server {peer}: {r}; closing it");
            }
            net.close(conn);
            writer.await;
            net.push(Input::Disconnected { peer, conn });
        })
        .detach();
    }

    async fn read_election(&self, stream: TcpStream, peer: NodeId) {
        let mut rd = stream;
        loop {
            match read_frame(&mut rd).await {
                Ok(Some(body)) => match msg::decode_notification(&body) {
                    Ok(note) => self.push(Input::Notification { from: peer, note }),
                    Err(e) => {
                        eprintln!("corezk: election connection from server {peer}: bad message {e:?}; closing it");
                        return;
                    }
                },
                Ok(None) => return,
                Err(e) => {
                    eprintln!("corezk: election connection from server {peer}: {e}; closing it");
                    return;
                }
            }
        }
    }

    /// Keeps a connection to `peer`'s election port while notifications wait for it.
    async fn election_sender(self: Rc<Self>, peer: NodeId) {
        let out = self.election[&peer].clone();
        let mut stream: Option<TcpStream> = None;
        loop {
            let wait = out.wake.notified();
            if out.queue.borrow().is_empty() {
                wait.await;
                continue;
            }
            if stream.is_none() {
                match self.dial_to(peer, KIND_ELECTION).await {
                    Ok(s) => stream = Some(s),
                    Err(_) => {
                        glommio::timer::sleep(ELECTION_REDIAL).await;
                        continue;
                    }
                }
            }
            let Some(f) = out.queue.borrow_mut().pop_front() else { continue };
            let s = stream.as_mut().expect("connected");
            if s.write_all(&f).await.is_err() {
                stream = None;
                // The notification is lost: ZAB resends while it looks for a leader.
            }
        }
    }
}

fn same_host(spec: &ServerSpec, ip: IpAddr) -> bool {
    let want = spec.quorum.ip();
    want == ip || (want.is_loopback() && ip.is_loopback()) || want.is_unspecified()
}
