//! Sessions: timeout negotiation, liveness, expiry, explicit close, reattach with id + password.
//!
//! Every test server runs with tickTime=2000, so timeouts are clamped into 4 s..40 s.

mod common;

use std::time::{Duration, Instant};

use common::*;
use zookeeper_client::{Client, Error, EventType};

async fn detached_client(addr: &str, timeout: Duration) -> Client {
    let mut connector = Client::connector();
    connector.session_timeout(timeout).detached().fail_eagerly();
    within("detached connect", connector.connect(addr)).await.expect("connect")
}

#[test]
fn session_timeout_is_negotiated_within_2_to_20_ticks() {
    let srv = Server::start();
    run(async {
        let tick = TICK_TIME_MS as u64;
        for (asked, want) in [
            (1_000, 2 * tick),
            (2 * tick - 1, 2 * tick),
            (2 * tick, 2 * tick),
            (10_000, 10_000),
            (20 * tick, 20 * tick),
            (20 * tick + 1, 20 * tick),
            (600_000, 20 * tick),
        ] {
            let zk = connect_with(srv.addr(), Duration::from_millis(asked)).await;
            assert_eq!(zk.session_timeout(), Duration::from_millis(want), "asked for {asked} ms");
        }
    });
}

#[test]
fn idle_session_is_kept_alive_by_pings() {
    let srv = Server::start();
    run(async {
        let zk = connect_with(srv.addr(), Duration::from_millis(4_000)).await;
        let base = unique_path("alive");
        zk.create(&base, b"", &persistent()).await.unwrap();
        let eph = format!("{base}/eph");
        zk.create(&eph, b"", &ephemeral()).await.unwrap();
        // Longer than the session timeout; the client only pings meanwhile.
        tokio::time::sleep(Duration::from_millis(6_500)).await;
        let st = zk.check_stat(&eph).await.unwrap().expect("ephemeral still there");
        assert_eq!(st.ephemeral_owner, zk.session_id().0);
        let observer = connect(srv.addr()).await;
        assert!(observer.check_stat(&eph).await.unwrap().is_some());
    });
}

#[test]
fn expired_session_loses_its_ephemerals_and_cannot_reattach() {
    let srv = Server::start();
    run(async {
        let observer = connect(srv.addr()).await;
        let base = unique_path("expire");
        observer.create(&base, b"", &persistent()).await.unwrap();
        let owner = detached_client(srv.addr(), Duration::from_millis(4_000)).await;
        assert_eq!(owner.session_timeout(), Duration::from_millis(4_000));
        let eph = format!("{base}/eph");
        let seq = format!("{base}/seq-");
        owner.create(&eph, b"", &ephemeral()).await.unwrap();
        owner
            .create(
                &seq,
                b"",
                &zookeeper_client::CreateMode::EphemeralSequential.with_acls(zookeeper_client::Acls::anyone_all()),
            )
            .await
            .unwrap();
        let (_, w) = observer.check_and_watch_stat(&eph).await.unwrap();
        let (_, wc) = observer.list_and_watch_children(&base).await.unwrap();
        let info = owner.session().clone();
        // Dropping a detached client closes its connection without closeSession.
        drop(owner);
        let dropped = Instant::now();

        // While the session lives on, the ephemerals stay.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert!(
            observer.check_stat(&eph).await.unwrap().is_some(),
            "ephemeral removed {:?} after a disconnect, before the 4 s session timeout",
            dropped.elapsed()
        );

        // Expiry: after the timeout (rounded up to a tick), well within 15 s.
        let ev = tokio::time::timeout(Duration::from_secs(15), w.changed())
            .await
            .expect("ephemeral not deleted within 15 s of the disconnect");
        let elapsed = dropped.elapsed();
        assert_eq!(ev.event_type, EventType::NodeDeleted);
        assert_eq!(ev.path, eph);
        assert!(elapsed >= Duration::from_millis(3_500), "session expired after {elapsed:?}, before its 4 s timeout");
        let ev = within("children changed", wc.changed()).await;
        assert_eq!(ev.event_type, EventType::NodeChildrenChanged);
        let (kids, _) = observer.get_children(&base).await.unwrap();
        assert!(kids.is_empty(), "all ephemerals of the session gone: {kids:?}");

        // The expired session cannot be resumed.
        let mut connector = Client::connector();
        connector.session(info).fail_eagerly();
        let r = within("reattach expired", connector.connect(srv.addr())).await;
        assert_eq!(r.map(|_| ()).unwrap_err(), Error::SessionExpired);
    });
}

#[test]
fn reattach_with_session_id_and_password_keeps_session_and_ephemerals() {
    let srv = Server::start();
    run(async {
        let observer = connect(srv.addr()).await;
        let base = unique_path("reattach");
        observer.create(&base, b"", &persistent()).await.unwrap();
        let first = detached_client(srv.addr(), Duration::from_millis(10_000)).await;
        let id = first.session_id();
        let eph = format!("{base}/eph");
        first.create(&eph, b"mine", &ephemeral()).await.unwrap();
        let info = first.session().clone();
        drop(first);

        let mut connector = Client::connector();
        connector.session(info).session_timeout(Duration::from_millis(10_000)).fail_eagerly();
        let second = within("reattach", connector.connect(srv.addr())).await.expect("reattach with id and password");
        assert_eq!(second.session_id(), id, "same session");
        let (data, st) = second.get_data(&eph).await.unwrap();
        assert_eq!(data, b"mine");
        assert_eq!(st.ephemeral_owner, id.0);
        assert_eq!(second.list_ephemerals(&base).await.unwrap(), vec![eph.clone()]);
        // The resumed session owns new ephemerals under the same id.
        let eph2 = format!("{base}/eph2");
        let (st2, _) = second.create(&eph2, b"", &ephemeral()).await.unwrap();
        assert_eq!(st2.ephemeral_owner, id.0);

        // Closing it (not detached) removes both.
        let (_, w) = observer.check_and_watch_stat(&eph).await.unwrap();
        drop(second);
        let ev = within("ephemeral deleted on close", w.changed()).await;
        assert_eq!(ev.event_type, EventType::NodeDeleted);
        assert_eq!(observer.check_stat(&eph2).await.unwrap(), None);
    });
}

#[test]
fn closed_session_cannot_be_reattached() {
    let srv = Server::start();
    run(async {
        let observer = connect(srv.addr()).await;
        let base = unique_path("closed");
        observer.create(&base, b"", &persistent()).await.unwrap();
        let zk = connect(srv.addr()).await;
        let eph = format!("{base}/eph");
        zk.create(&eph, b"", &ephemeral()).await.unwrap();
        let info = zk.session().clone();
        drop(zk);
        eventually("ephemeral removed by closeSession", Duration::from_secs(5), || async {
            observer.check_stat(&eph).await.unwrap().is_none()
        })
        .await;
        let mut connector = Client::connector();
        connector.session(info).fail_eagerly();
        let r = within("reattach closed", connector.connect(srv.addr())).await;
        assert_eq!(r.map(|_| ()).unwrap_err(), Error::SessionExpired);
    });
}

#[test]
fn close_session_reply_means_ephemerals_are_gone() {
    let srv = Server::start();
    let base = unique_path("rawclose");
    let mut observer = RawConn::session(srv.addr(), 10_000);
    assert_eq!(observer.create(&base, Some(b""), 0).err, 0);
    let mut owner = RawConn::session(srv.addr(), 10_000);
    let eph = format!("{base}/eph");
    assert_eq!(owner.create(&eph, Some(b""), 1).err, 0);
    let st = observer.exists(&eph, true).unwrap();
    assert_eq!(st.ephemeral_owner, owner.session_id);
    owner.close_session();
    // The watch event was sent when the close was applied; a read now cannot see the node.
    assert_eq!(observer.exists(&eph, false), Err(code::NO_NODE));
    let ev = observer.events.pop_front().expect("NodeDeleted before the later read's reply");
    assert_eq!((ev.kind, ev.path.as_str()), (event::NODE_DELETED, eph.as_str()));
}

#[test]
fn reattach_moves_the_session_off_the_old_connection() {
    let srv = Server::start();
    let base = unique_path("move");
    let mut old = RawConn::session(srv.addr(), 10_000);
    assert_eq!(old.create(&base, Some(b""), 0).err, 0);
    let eph = format!("{base}/eph");
    assert_eq!(old.create(&eph, Some(b""), 1).err, 0);
    let mut new = RawConn::open(srv.addr());
    let r = new
        .handshake(&connect_request(0, 10_000, old.session_id, Some(&old.passwd.clone()), Some(false)))
        .expect("reattach response");
    assert_eq!(r.session_id, old.session_id);
    // The old connection is closed by the server; the session and its ephemeral live on.
    old.expect_closed(Duration::from_secs(5), "old connection after reattach elsewhere");
    let st = new.exists(&eph, false).expect("ephemeral survives the move");
    assert_eq!(st.ephemeral_owner, r.session_id);
    new.close_session();
}

#[test]
fn each_session_has_its_own_ephemerals() {
    let srv = Server::start();
    run(async {
        let a = connect(srv.addr()).await;
        let b = connect(srv.addr()).await;
        assert_ne!(a.session_id(), b.session_id());
        let base = unique_path("own");
        a.create(&base, b"", &persistent()).await.unwrap();
        a.create(&format!("{base}/a"), b"", &ephemeral()).await.unwrap();
        b.create(&format!("{base}/b"), b"", &ephemeral()).await.unwrap();
        drop(a);
        eventually("a's ephemeral removed", Duration::from_secs(5), || async {
            b.check_stat(&format!("{base}/a")).await.unwrap().is_none()
        })
        .await;
        let st = b.check_stat(&format!("{base}/b")).await.unwrap().expect("b's ephemeral stays");
        assert_eq!(st.ephemeral_owner, b.session_id().0);
    });
}

#[test]
fn silent_connection_expires_and_is_closed_by_the_server() {
    let srv = Server::start();
    let base = unique_path("silent");
    let mut observer = RawConn::session(srv.addr(), 30_000);
    assert_eq!(observer.create(&base, Some(b""), 0).err, 0);
    let mut silent = RawConn::session(srv.addr(), 4_000);
    assert_eq!(silent.timeout_ms, 4_000);
    let eph = format!("{base}/eph");
    assert_eq!(silent.create(&eph, Some(b""), 1).err, 0);
    let started = Instant::now();
    // No pings: the server expires the session and closes the still-open connection.
    silent.expect_closed(Duration::from_secs(15), "connection of an expired session");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(3_500), "expired after {elapsed:?}, timeout is 4 s");
    // The ephemeral goes with the session (ZooKeeper may close the socket just before it
    // applies the closeSession transaction, so allow a moment).
    let deadline = Instant::now() + Duration::from_secs(5);
    while observer.exists(&eph, false) != Err(code::NO_NODE) {
        assert!(Instant::now() < deadline, "ephemeral of the expired session still there");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn session_can_move_between_connections_repeatedly() {
    let srv = Server::start();
    let base = unique_path("hop");
    let mut conn = RawConn::session(srv.addr(), 10_000);
    assert_eq!(conn.create(&base, Some(b""), 0).err, 0);
    let id = conn.session_id;
    let passwd = conn.passwd.clone();
    // Several hops, so that with several shards the session lands on different ones.
    for hop in 0..8 {
        let eph = format!("{base}/e{hop}");
        assert_eq!(conn.create(&eph, Some(b""), 1).err, 0, "hop {hop}: create ephemeral");
        let mut next = RawConn::open(srv.addr());
        let r = next
            .handshake(&connect_request(0, 10_000, id, Some(&passwd), Some(false)))
            .unwrap_or_else(|e| panic!("hop {hop}: reattach: {e:?}"));
        assert_eq!((r.session_id, r.passwd.as_deref()), (id, Some(&passwd[..])), "hop {hop}");
        conn.expect_closed(Duration::from_secs(5), "previous connection");
        conn = next;
        let kids = conn.get_children(&base, false).unwrap();
        assert_eq!(kids.len(), hop + 1, "hop {hop}: all ephemerals still there: {kids:?}");
        let st = conn.exists(&eph, false).unwrap();
        assert_eq!(st.ephemeral_owner, id);
    }
    conn.close_session();
    let mut observer = RawConn::session(srv.addr(), 10_000);
    assert_eq!(observer.get_children(&base, false).unwrap(), Vec::<String>::new());
}

#[test]
fn acknowledged_writes_survive_kill_and_restart() {
    let Some(mut srv) = Server::start_restartable() else {
        return;
    };
    run(async {
        let zk = connect_with(srv.addr(), Duration::from_millis(20_000)).await;
        let base = unique_path("durable");
        zk.create(&base, b"v0", &persistent()).await.unwrap();
        for i in 0..20 {
            zk.create(&format!("{base}/k{i}"), format!("{i}").as_bytes(), &persistent()).await.unwrap();
        }
        let last = zk.set_data(&base, b"last", None).await.unwrap();
        let eph = format!("{base}/eph");
        zk.create(&eph, b"", &ephemeral()).await.unwrap();
        let id = zk.session_id();

        tokio::task::block_in_place(|| srv.kill_and_restart());

        // Everything acknowledged is there, for a new client ...
        let fresh = connect(srv.addr()).await;
        let (data, st) = fresh.get_data(&base).await.unwrap();
        assert_eq!(data, b"last");
        assert_eq!(st.mzxid, last.mzxid);
        assert_eq!(st.num_children, 21);
        for i in 0..20 {
            let (d, _) = fresh.get_data(&format!("{base}/k{i}")).await.unwrap();
            assert_eq!(d, format!("{i}").as_bytes());
        }
        // ... new writes continue the zxid sequence ...
        let after = fresh.set_data(&base, b"after", None).await.unwrap();
        assert!(after.mzxid > last.mzxid, "zxid went backwards after restart");
        // ... and the old client reconnects with its session (its lastZxidSeen is not ahead of
        // the server), keeping its ephemeral.
        eventually("old client reconnected", Duration::from_secs(15), || async { zk.check_stat(&base).await.is_ok() })
            .await;
        assert_eq!(zk.session_id(), id);
        let st = zk.check_stat(&eph).await.unwrap().expect("ephemeral of a live session survives restart");
        assert_eq!(st.ephemeral_owner, id.0);
    });
}

#[test]
fn second_process_on_the_same_data_dir_refuses_to_start() {
    let Some(srv) = Server::start_restartable() else {
        return;
    };
    let status = srv.second_process_on_same_data_dir(Duration::from_secs(10));
    match status {
        Some(s) => assert!(!s.success(), "second process exited with success"),
        None => panic!("a second corezk on a locked data directory kept running"),
    }
    assert_eq!(four_letter(srv.addr(), "ruok").unwrap(), "imok", "the first server is unaffected");
}

#[test]
fn configured_session_timeout_bounds_apply() {
    let Some(srv) = Server::start_profile(
        "session_bounds",
        &[("minSessionTimeout", Some("5000")), ("maxSessionTimeout", Some("7000"))],
    ) else {
        return;
    };
    let conf = four_letter(srv.addr(), "conf").unwrap();
    assert!(conf.contains("minSessionTimeout=5000\n") && conf.contains("maxSessionTimeout=7000\n"), "conf:\n{conf}");
    for (asked, want) in [(1_000, 5_000), (6_000, 6_000), (30_000, 7_000)] {
        let mut c = RawConn::open(srv.addr());
        let r = c.handshake(&connect_request(0, asked, 0, Some(&[0u8; 16]), Some(false))).unwrap();
        assert_eq!(r.timeout_ms, want, "asked for {asked} ms");
    }
}

#[test]
fn many_sessions_come_and_go() {
    let srv = Server::start();
    run(async {
        let observer = connect(srv.addr()).await;
        let base = unique_path("many");
        observer.create(&base, b"", &persistent()).await.unwrap();
        let mut clients = Vec::new();
        for i in 0..40 {
            let c = connect(srv.addr()).await;
            c.create(&format!("{base}/e{i:02}"), b"", &ephemeral()).await.unwrap();
            clients.push(c);
        }
        let ids: std::collections::HashSet<i64> = clients.iter().map(|c| c.session_id().0).collect();
        assert_eq!(ids.len(), 40, "distinct session ids");
        assert_eq!(observer.get_children(&base).await.unwrap().1.num_children, 40);
        drop(clients);
        eventually("all 40 ephemerals removed", Duration::from_secs(10), || async {
            observer.get_children(&base).await.unwrap().1.num_children == 0
        })
        .await;
        let (_, st) = observer.get_children(&base).await.unwrap();
        assert_eq!(st.cversion, 80);
    });
}
