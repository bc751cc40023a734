//! The client port: one listening socket, bound once by this process without SO_REUSEPORT, and
//! handed (as duplicates) to every shard, which all accept from it.
//!
//! Why not one SO_REUSEPORT listener per shard: the kernel would let a second process join the
//! same port and silently take half of the connections. A port held by a live server (anything
//! that answers on it) is a start-up error naming the port. A port still held by a listener
//! that nobody serves (after kill -9 the dead process's io_uring can keep its listening socket
//! open for a moment) is retried for a bounded time.
//!
//! The socket is non-blocking (see `ClientPort::bind`): a blocking shared listener let one
//! shard's accept() block its executor.
//!
//! Owns binding, the bounded retry and the liveness probe. Never accepts connections itself.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{IntoRawFd, RawFd};
use std::time::{Duration, Instant};

/// How long a port held by a listener nobody serves may keep us waiting.
pub const LINGER_WAIT_MAX: Duration = Duration::from_secs(15);
/// Pause between bind attempts.
const RETRY_EVERY: Duration = Duration::from_millis(50);
/// How long the probe waits for a connection and for a reply.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Pending connections the kernel queues for the shards.
const BACKLOG: i32 = 1024;

/// The bound client port.
pub struct ClientPort {
    listener: TcpListener,
}

impl ClientPort {
    /// Binds `addr`, waiting (bounded) while only a dead listener holds it.
    pub fn bind(addr: SocketAddr) -> Result<ClientPort, String> {
        let t0 = Instant::now();
        let mut said = false;
        let mut probed = false;
        loop {
            match TcpListener::bind(addr) {
                Ok(listener) => {
                    use std::os::fd::AsRawFd;
                    // std listens with a small backlog; a second listen() only raises it.
                    unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) };
                    // Non-blocking for good: the shards' duplicates share this file status, and
                    // glommio's accept first tries a direct accept() after setting O_NONBLOCK and
                    // then restores the flags it saw. Were the socket blocking, one shard could
                    // restore "blocking" just before another's direct accept(), which then blocks
                    // that shard's whole executor (and the commit core on shard 0) until the next
                    // connection arrives: seen as new sessions that were never answered.
                    listener.set_nonblocking(true).map_err(|e| format!("cannot set up client port {addr}: {e}"))?;
                    if said {
                        eprintln!("corezk: client port {addr} is free again after {} ms", t0.elapsed().as_millis());
                    }
                    return Ok(ClientPort { listener });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    // Probed once: after that only the release of the port is awaited.
                    if !probed && someone_answers(addr) {
                        return Err(format!(
                            "client port {addr} is in use by a running server (it answered on that port): stop it \
                             or choose another clientPort"
                        ));
                    }
                    if t0.elapsed() >= LINGER_WAIT_MAX {
                        return Err(format!(
                            "client port {addr} is in use (nothing answers on it, but it has not been released in \
                             {} s): choose another clientPort or find the process holding it (ss -ltnp)",
                            LINGER_WAIT_MAX.as_secs()
                        ));
                    }
                    probed = true;
                    if !said {
                        eprintln!(
                            "corezk: client port {addr} is held by a listener that does not answer (a process that \
                             just died?); waiting up to {} s for it",
                            LINGER_WAIT_MAX.as_secs()
                        );
                        said = true;
                    }
                    std::thread::sleep(RETRY_EVERY);
                }
                Err(e) => return Err(format!("cannot listen on client port {addr}: {e}")),
            }
        }
    }

    /// A duplicate of the listening socket for one shard (close-on-exec, the caller owns it).
    pub fn share(&self) -> Result<RawFd, String> {
        let dup = self.listener.try_clone().map_err(|e| format!("cannot share the client port: {e}"))?;
        Ok(dup.into_raw_fd())
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }
}

/// Whether a live server holds `addr`: it accepts a connection and answers a four-letter word
/// (ZooKeeper and corezk both answer `srvr`, or say it is not allowed). A listener that nobody
/// serves accepts in the kernel but never answers.
fn someone_answers(addr: SocketAddr) -> bool {
    let target = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    };
    let Ok(mut s) = TcpStream::connect_timeout(&target, PROBE_TIMEOUT) else { return false };
    let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
    if s.write_all(b"srvr").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_served_by_a_live_process_is_refused_at_once() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = held.accept().unwrap();
            let mut b = [0u8; 4];
            c.read_exact(&mut b).unwrap();
            c.write_all(b"Zookeeper version: test\n").unwrap();
            held
        });
        let t0 = Instant::now();
        let err = ClientPort::bind(addr).err().expect("the port is taken");
        assert!(err.contains(&addr.to_string()) && err.contains("running server"), "{err}");
        assert!(t0.elapsed() < LINGER_WAIT_MAX);
        drop(server.join().unwrap());
    }

    #[test]
    fn a_port_held_by_a_silent_listener_is_taken_once_it_is_released() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            drop(held);
        });
        let port = ClientPort::bind(addr).expect("bound after the silent listener closed");
        assert_eq!(port.local_addr(), Some(addr));
        release.join().unwrap();
    }
}
