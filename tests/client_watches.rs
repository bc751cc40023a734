//! Watches: one-shot, persistent, recursive, removal, ordering, SetWatches, session close.
//!
//! "No event" is checked without sleeping: after the change that must not fire, a sentinel change
//! that must fire is made; since notifications arrive in zxid order, the next event seen has to be
//! the sentinel's.

mod common;

use std::time::Duration;

use common::*;
use zookeeper_client::{AddWatchMode, EventType, OneshotWatcher, PersistentWatcher, WatchedEvent};

async fn next_oneshot(w: OneshotWatcher, what: &str) -> WatchedEvent {
    within(what, w.changed()).await
}

/// The next node event (session state events, e.g. Disconnected during a reconnect, skipped).
async fn next_persistent(w: &mut PersistentWatcher, what: &str) -> WatchedEvent {
    within(what, async {
        loop {
            let ev = w.changed().await;
            if ev.event_type != EventType::Session {
                return ev;
            }
        }
    })
    .await
}

fn assert_event(ev: &WatchedEvent, kind: EventType, path: &str) {
    assert_eq!((ev.event_type, ev.path.as_str()), (kind, path), "unexpected event {ev:?}");
}

/// Notification zxid: −1 (≤ 3.8) or the zxid of the transaction (3.9+).
fn assert_event_zxid(ev: &WatchedEvent, txn_zxid: i64) {
    assert!(ev.zxid == -1 || ev.zxid == txn_zxid, "event zxid {} is neither -1 nor the txn zxid {txn_zxid}", ev.zxid);
}

// ------------------------------------------------------------------------------------------------
// One-shot watches through the crate

#[test]
fn data_exist_and_child_watches_fire() {
    let srv = Server::start();
    run(async {
        let a = connect(srv.addr()).await;
        let b = connect(srv.addr()).await;
        let base = unique_path("oneshot");
        b.create(&base, b"", &persistent()).await.unwrap();

        // Data watch -> NodeDataChanged.
        let (_, _, w) = a.get_and_watch_data(&base).await.unwrap();
        let st = b.set_data(&base, b"1", None).await.unwrap();
        let ev = next_oneshot(w, "data watch").await;
        assert_event(&ev, EventType::NodeDataChanged, &base);
        assert_event_zxid(&ev, st.mzxid);

        // Exist watch on a missing node -> NodeCreated.
        let kid = format!("{base}/kid");
        let (none, w) = a.check_and_watch_stat(&kid).await.unwrap();
        assert!(none.is_none());
        b.create(&kid, b"", &persistent()).await.unwrap();
        assert_event(&next_oneshot(w, "exist watch").await, EventType::NodeCreated, &kid);

        // Exist watch on an existing node -> NodeDataChanged, then NodeDeleted for a data watch.
        let (some, w) = a.check_and_watch_stat(&kid).await.unwrap();
        assert!(some.is_some());
        b.set_data(&kid, b"x", None).await.unwrap();
        assert_event(&next_oneshot(w, "exists+set").await, EventType::NodeDataChanged, &kid);

        // Child watch: not fired by the parent's data change, fired by a child create.
        let (_, w) = a.list_and_watch_children(&base).await.unwrap();
        b.set_data(&base, b"2", None).await.unwrap();
        b.set_data(&kid, b"y", None).await.unwrap();
        b.create(&format!("{base}/kid2"), b"", &persistent()).await.unwrap();
        assert_event(&next_oneshot(w, "child watch").await, EventType::NodeChildrenChanged, &base);
        // ... and by a child delete.
        let (_, _, w) = a.get_and_watch_children(&base).await.unwrap();
        b.delete(&format!("{base}/kid2"), None).await.unwrap();
        assert_event(&next_oneshot(w, "child watch on delete").await, EventType::NodeChildrenChanged, &base);

        // Delete of the watched node fires NodeDeleted for data, exist and child watches.
        let (_, _, wd) = a.get_and_watch_data(&kid).await.unwrap();
        let (_, we) = a.check_and_watch_stat(&kid).await.unwrap();
        let (_, wc) = a.list_and_watch_children(&kid).await.unwrap();
        b.delete(&kid, None).await.unwrap();
        assert_event(&next_oneshot(wd, "data watch on delete").await, EventType::NodeDeleted, &kid);
        assert_event(&next_oneshot(we, "exist watch on delete").await, EventType::NodeDeleted, &kid);
        assert_event(&next_oneshot(wc, "child watch on delete").await, EventType::NodeDeleted, &kid);
    });
}

#[test]
fn own_write_event_arrives_before_the_write_reply() {
    let srv = Server::start();
    run(async {
        let a = connect(srv.addr()).await;
        let base = unique_path("ownwrite");
        a.create(&base, b"", &persistent()).await.unwrap();
        let (_, _, w) = a.get_and_watch_data(&base).await.unwrap();
        a.set_data(&base, b"new", None).await.unwrap();
        // The notification was on the wire before the setData reply: it is already delivered.
        let ev = tokio::time::timeout(Duration::ZERO, w.changed())
            .await
            .expect("the watch event must be delivered before the setData reply");
        assert_event(&ev, EventType::NodeDataChanged, &base);
    });
}

#[test]
fn event_arrives_before_a_read_that_sees_the_change() {
    let srv = Server::start();
    run(async {
        let a = connect(srv.addr()).await;
        let b = connect(srv.addr()).await;
        let base = unique_path("order");
        a.create(&base, b"old", &persistent()).await.unwrap();
        for round in 0..20 {
            let (_, _, w) = a.get_and_watch_data(&base).await.unwrap();
            let new = format!("v{round}");
            // Issue the write on B and poll on A without awaiting B first.
            let write = b.set_data(&base, new.as_bytes(), None);
            let mut w = Some(w);
            let mut seen = false;
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                let (data, _) = a.get_data(&base).await.unwrap();
                if data == new.as_bytes() {
                    let ev = tokio::time::timeout(Duration::ZERO, w.take().unwrap().changed())
                        .await
                        .unwrap_or_else(|_| panic!("round {round}: read saw the new data before the watch event"));
                    assert_event(&ev, EventType::NodeDataChanged, &base);
                    seen = true;
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert!(seen, "round {round}: write not visible within 5 s");
            within("write", write).await.unwrap();
        }
    });
}

#[test]
fn events_reach_many_sessions() {
    let srv = Server::start();
    run(async {
        let writer = connect(srv.addr()).await;
        let base = unique_path("fanout");
        writer.create(&base, b"", &persistent()).await.unwrap();
        let mut clients = Vec::new();
        let mut watchers = Vec::new();
        for _ in 0..8 {
            let c = connect(srv.addr()).await;
            let (_, _, w) = c.get_and_watch_data(&base).await.unwrap();
            watchers.push(w);
            clients.push(c);
        }
        writer.set_data(&base, b"go", None).await.unwrap();
        for (i, w) in watchers.into_iter().enumerate() {
            let ev = next_oneshot(w, &format!("event at client {i}")).await;
            assert_event(&ev, EventType::NodeDataChanged, &base);
        }
    });
}

#[test]
fn multi_fires_events_and_failed_multi_fires_none() {
    let srv = Server::start();
    run(async {
        let a = connect(srv.addr()).await;
        let b = connect(srv.addr()).await;
        let base = unique_path("multiwatch");
        b.create(&base, b"", &persistent()).await.unwrap();
        let p1 = format!("{base}/p1");
        let p2 = format!("{base}/p2");
        let mut w = a.watch(&base, AddWatchMode::PersistentRecursive).await.unwrap();
        // Failed multi: no events (the first event seen below must be the later multi's).
        let mut m = b.new_multi_writer();
        m.add_create(&format!("{base}/never"), b"", &persistent()).unwrap();
        m.add_delete(&format!("{base}/missing"), None).unwrap();
        assert!(within("failing multi", m.commit()).await.is_err());
        // Successful multi: events in op order.
        let mut m = b.new_multi_writer();
        m.add_create(&p1, b"", &persistent()).unwrap();
        m.add_create(&p2, b"", &persistent()).unwrap();
        m.add_set_data(&p1, b"x", None).unwrap();
        within("multi", m.commit()).await.unwrap();
        assert_event(&next_persistent(&mut w, "1").await, EventType::NodeCreated, &p1);
        assert_event(&next_persistent(&mut w, "2").await, EventType::NodeCreated, &p2);
        assert_event(&next_persistent(&mut w, "3").await, EventType::NodeDataChanged, &p1);
    });
}

// ------------------------------------------------------------------------------------------------
// Persistent and persistent-recursive watches (addWatch)

#[test]
fn persistent_watch_sees_node_and_child_list_changes() {
    let srv = Server::start();
    run(async {
        let a = connect(srv.addr()).await;
        let b = connect(srv.addr()).await;
        let base = unique_path("persist");
        b.create(&base, b"", &persistent()).await.unwrap();
        let p = format!("{base}/p");
        let mut w = a.watch(&p, AddWatchMode::Persistent).await.unwrap();

        b.create(&p, b"", &persistent()).await.unwrap();
        assert_event(&next_persistent(&mut w, "created").await, EventType::NodeCreated, &p);
        b.set_data(&p, b"1", None).await.unwrap();
        assert_event(&next_persistent(&mut w, "changed").await, EventType::NodeDataChanged, &p);
        b.set_data(&p, b"2", None).await.unwrap();
        assert_event(&next_persistent(&mut w, "changed again").await, EventType::NodeDataChanged, &p);
        let c = format!("{p}/c");
        b.create(&c, b"", &persistent()).await.unwrap();
        assert_event(&next_persistent(&mut w, "child created").await, EventType::NodeChildrenChanged, &p);
        // Changes below the child and to a sibling with a common prefix are not seen.
        b.set_data(&c, b"x", None).await.unwrap();
        b.create(&format!("{c}/g"), b"", &persistent()).await.unwrap();
        b.create(&format!("{p}x"), b"", &persistent()).await.unwrap();
        b.delete(&format!("{c}/g"), None).await.unwrap();
        b.delete(&c, None).await.unwrap();
        assert_event(&next_persistent(&mut w, "child deleted").await, EventType::NodeChildrenChanged, &p);
        b.delete(&p, None).await.unwrap();
        assert_event(&next_persistent(&mut w, "deleted").await, EventType::NodeDeleted, &p);
        // Still there after the node is gone.
        b.create(&p, b"", &persistent()).await.unwrap();
        assert_event(&next_persistent(&mut w, "re-created").await, EventType::NodeCreated, &p);
        assert!(tokio::time::timeout(Duration::from_millis(200), w.changed()).await.is_err(), "no further events");
    });
}

#[test]
fn persistent_recursive_watch_sees_the_subtree_without_child_events() {
    let srv = Server::start();
    run(async {
        let a = connect(srv.addr()).await;
        let b = connect(srv.addr()).await;
        let base = unique_path("recursive");
        b.create(&base, b"", &persistent()).await.unwrap();
        let p = format!("{base}/p");
        let mut w = a.watch(&p, AddWatchMode::PersistentRecursive).await.unwrap();
        let pa = format!("{p}/a");
        let pab = format!("{p}/a/b");

        b.create(&p, b"", &persistent()).await.unwrap();
        b.create(&format!("{p}x"), b"", &persistent()).await.unwrap(); // sibling, not below p
        b.create(&pa, b"", &persistent()).await.unwrap();
        b.create(&pab, b"", &persistent()).await.unwrap();
        b.set_data(&pab, b"1", None).await.unwrap();
        b.set_data(&format!("{p}x"), b"1", None).await.unwrap();
        b.set_data(&p, b"1", None).await.unwrap();
        b.delete(&pab, None).await.unwrap();
        b.delete(&pa, None).await.unwrap();
        b.delete(&p, None).await.unwrap();
        let want = [
            (EventType::NodeCreated, &p),
            (EventType::NodeCreated, &pa),
            (EventType::NodeCreated, &pab),
            (EventType::NodeDataChanged, &pab),
            (EventType::NodeDataChanged, &p),
            (EventType::NodeDeleted, &pab),
            (EventType::NodeDeleted, &pa),
            (EventType::NodeDeleted, &p),
        ];
        for (i, (kind, path)) in want.iter().enumerate() {
            let ev = next_persistent(&mut w, &format!("recursive event {i}")).await;
            assert_event(&ev, *kind, path);
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(200), w.changed()).await.is_err(),
            "no NodeChildrenChanged or other extra events"
        );
    });
}

#[test]
fn crate_watch_removal_is_accepted() {
    let srv = Server::start();
    run(async {
        let a = connect(srv.addr()).await;
        let base = unique_path("cremove");
        a.create(&base, b"", &persistent()).await.unwrap();
        let w = a.watch(&base, AddWatchMode::Persistent).await.unwrap();
        within("remove persistent", w.remove()).await.unwrap();
        let w = a.watch(&base, AddWatchMode::PersistentRecursive).await.unwrap();
        within("remove recursive", w.remove()).await.unwrap();
        let (_, _, w) = a.get_and_watch_data(&base).await.unwrap();
        within("remove data watch", w.remove()).await.unwrap();
        let (_, w) = a.list_and_watch_children(&base).await.unwrap();
        within("remove child watch", w.remove()).await.unwrap();
        // The session is fine afterwards and new watches work.
        let (_, _, w) = a.get_and_watch_data(&base).await.unwrap();
        a.set_data(&base, b"x", None).await.unwrap();
        assert_event(&next_oneshot(w, "after removals").await, EventType::NodeDataChanged, &base);
    });
}

// ------------------------------------------------------------------------------------------------
// Session close

#[test]
fn session_close_fires_node_deleted_for_ephemerals() {
    let srv = Server::start();
    run(async {
        let observer = connect(srv.addr()).await;
        let base = unique_path("closeeph");
        observer.create(&base, b"", &persistent()).await.unwrap();
        let owner = connect(srv.addr()).await;
        let e1 = format!("{base}/e1");
        let e2 = format!("{base}/e2");
        owner.create(&e1, b"", &ephemeral()).await.unwrap();
        owner.create(&e2, b"", &ephemeral()).await.unwrap();
        let (_, _, wd) = observer.get_and_watch_data(&e1).await.unwrap();
        let (_, we) = observer.check_and_watch_stat(&e2).await.unwrap();
        let (_, wc) = observer.list_and_watch_children(&base).await.unwrap();
        drop(owner); // not detached: sends closeSession
        assert_event(&next_oneshot(wd, "e1 deleted").await, EventType::NodeDeleted, &e1);
        assert_event(&next_oneshot(we, "e2 deleted").await, EventType::NodeDeleted, &e2);
        assert_event(&next_oneshot(wc, "parent children changed").await, EventType::NodeChildrenChanged, &base);
        assert_eq!(observer.check_stat(&e1).await.unwrap(), None);
        assert_eq!(observer.check_stat(&e2).await.unwrap(), None);
        let (kids, st) = observer.get_children(&base).await.unwrap();
        assert!(kids.is_empty());
        assert_eq!(st.cversion, 4, "two creates + two deletes");
    });
}

// ------------------------------------------------------------------------------------------------
// Raw-protocol watch semantics (exact frames, one-shot behaviour, removal, SetWatches)

fn set_data_raw(c: &mut RawConn, path: &str, data: &[u8]) {
    assert_eq!(c.set_data(path, data).err, 0, "setData {path}");
}

fn create_raw(c: &mut RawConn, path: &str) {
    assert_eq!(c.create(path, Some(b""), 0).err, 0, "create {path}");
}

fn expect_event(c: &mut RawConn, kind: i32, path: &str) {
    let ev = c.next_event().unwrap_or_else(|e| panic!("waiting for event {kind} on {path}: {e:?}"));
    assert_eq!((ev.kind, ev.path.as_str(), ev.state), (kind, path, 3), "unexpected event {ev:?}");
}

#[test]
fn raw_watches_fire_once_and_are_deduplicated() {
    let srv = Server::start();
    let base = unique_path("rawonce");
    let mut w = RawConn::session(srv.addr(), 10_000);
    let mut r = RawConn::session(srv.addr(), 10_000);
    create_raw(&mut w, &base);
    let p = format!("{base}/p");
    let q = format!("{base}/q");
    let m = format!("{base}/m");
    let gone = format!("{base}/gone");
    let s = format!("{base}/sentinel");
    create_raw(&mut w, &p);
    create_raw(&mut w, &q);
    // Data watch registered three times (getData twice, exists once): one event.
    r.get_data(&p, true).unwrap();
    r.get_data(&p, true).unwrap();
    r.exists(&p, true).unwrap();
    r.get_children(&q, true).unwrap();
    assert_eq!(r.exists(&m, true), Err(code::NO_NODE));
    // getData/getChildren on a missing node register nothing.
    assert_eq!(r.get_data(&gone, true), Err(code::NO_NODE));
    assert_eq!(r.get_children(&gone, true), Err(code::NO_NODE));
    assert_eq!(r.exists(&s, true), Err(code::NO_NODE));
    assert!(r.events.is_empty());

    set_data_raw(&mut w, &p, b"1");
    set_data_raw(&mut w, &p, b"2"); // watch already fired
    create_raw(&mut w, &format!("{q}/c1"));
    create_raw(&mut w, &format!("{q}/c2")); // already fired
    set_data_raw(&mut w, &q, b"x"); // child watch is not a data watch
    create_raw(&mut w, &m);
    set_data_raw(&mut w, &m, b"x"); // exists watch already fired
    create_raw(&mut w, &gone); // nothing was registered
    create_raw(&mut w, &s);

    expect_event(&mut r, event::NODE_DATA_CHANGED, &p);
    expect_event(&mut r, event::NODE_CHILDREN_CHANGED, &q);
    expect_event(&mut r, event::NODE_CREATED, &m);
    expect_event(&mut r, event::NODE_CREATED, &s);
    // The writer itself had no watches.
    assert_eq!(w.ping().err, 0);
    assert!(w.events.is_empty(), "writer got events: {:?}", w.events);
}

#[test]
fn raw_event_precedes_reply_of_a_read_that_sees_the_change() {
    let srv = Server::start();
    let base = unique_path("rawprecede");
    let mut w = RawConn::session(srv.addr(), 10_000);
    // Several readers, so that with several shards some sit on another shard than the writer.
    let mut readers: Vec<RawConn> = (0..4).map(|_| RawConn::session(srv.addr(), 10_000)).collect();
    create_raw(&mut w, &base);
    for round in 0..40 {
        let r = &mut readers[round % 4];
        let data = format!("v{round}");
        r.get_data(&base, true).unwrap();
        // Send the write without reading its reply, then read on r until the change shows.
        w.send_request(op::SET_DATA, &Enc::new().str(&base).buf(Some(data.as_bytes())).i32(-1).bytes());
        let mut seen = false;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let (got, _) = r.get_data(&base, false).unwrap();
            if got.as_deref() == Some(data.as_bytes()) {
                let ev = r
                    .events
                    .pop_front()
                    .unwrap_or_else(|| panic!("round {round}: getData reply showed the change before its event"));
                assert_eq!((ev.kind, ev.path.as_str()), (event::NODE_DATA_CHANGED, base.as_str()));
                seen = true;
                break;
            }
        }
        assert!(seen, "round {round}: change not visible within 5 s");
        let (h, _) = w.read_reply().unwrap();
        assert_eq!(h.err, 0);
    }
    // The writer's own watch fires before its write reply.
    w.get_data(&base, true).unwrap();
    let (h, _) = w.call(op::SET_DATA, &Enc::new().str(&base).buf(Some(b"own")).i32(-1).bytes());
    assert_eq!(h.err, 0);
    let ev = w.events.pop_front().expect("event before the setData reply on the writer's own connection");
    assert_eq!(ev.kind, event::NODE_DATA_CHANGED);
    assert!(ev.zxid == -1 || ev.zxid == h.zxid, "notification zxid {:#x}", ev.zxid);
}

#[test]
fn raw_remove_watches() {
    let srv = Server::start();
    let base = unique_path("rawremove");
    let mut w = RawConn::session(srv.addr(), 10_000);
    let mut r = RawConn::session(srv.addr(), 10_000);
    create_raw(&mut w, &base);
    let p = format!("{base}/p");
    create_raw(&mut w, &p);
    let remove = |r: &mut RawConn, path: &str, kind: i32| {
        r.call(op::REMOVE_WATCHES, &Enc::new().str(path).i32(kind).bytes()).0.err
    };

    // Nothing to remove.
    assert_eq!(remove(&mut r, &p, 3), code::NO_WATCHER);
    assert_eq!(remove(&mut r, &p, 2), code::NO_WATCHER);

    // Remove the child half, the data half keeps firing.
    r.get_data(&p, true).unwrap();
    r.get_children(&p, true).unwrap();
    assert_eq!(remove(&mut r, &p, 1), 0);
    assert_eq!(remove(&mut r, &p, 1), code::NO_WATCHER);
    create_raw(&mut w, &format!("{p}/c"));
    set_data_raw(&mut w, &p, b"1");
    expect_event(&mut r, event::NODE_DATA_CHANGED, &p);

    // Remove a data watch; a sentinel proves nothing fired.
    let s1 = format!("{base}/s1");
    r.get_data(&p, true).unwrap();
    assert_eq!(remove(&mut r, &p, 2), 0);
    assert_eq!(r.exists(&s1, true), Err(code::NO_NODE));
    set_data_raw(&mut w, &p, b"2");
    create_raw(&mut w, &s1);
    expect_event(&mut r, event::NODE_CREATED, &s1);

    // Persistent and recursive watches are removed whole with type Any.
    let s2 = format!("{base}/s2");
    assert_eq!(r.call(op::ADD_WATCH, &Enc::new().str(&p).i32(0).bytes()).0.err, 0);
    assert_eq!(r.call(op::ADD_WATCH, &Enc::new().str(&base).i32(1).bytes()).0.err, 0);
    assert_eq!(remove(&mut r, &p, 3), 0);
    assert_eq!(remove(&mut r, &base, 3), 0);
    assert_eq!(remove(&mut r, &p, 3), code::NO_WATCHER);
    assert_eq!(r.exists(&s2, true), Err(code::NO_NODE));
    set_data_raw(&mut w, &p, b"3");
    create_raw(&mut w, &format!("{p}/c2"));
    create_raw(&mut w, &s2);
    expect_event(&mut r, event::NODE_CREATED, &s2);

    // Watches are per connection: another connection cannot remove r's watch.
    let s3 = format!("{base}/s3");
    r.get_data(&p, true).unwrap();
    assert_eq!(remove(&mut w, &p, 3), code::NO_WATCHER);
    set_data_raw(&mut w, &p, b"4");
    expect_event(&mut r, event::NODE_DATA_CHANGED, &p);
    assert_eq!(r.exists(&s3, true), Err(code::NO_NODE));
    create_raw(&mut w, &s3);
    expect_event(&mut r, event::NODE_CREATED, &s3);
}

#[test]
fn raw_persistent_watch_events_and_add_watch_on_missing_path() {
    let srv = Server::start();
    let base = unique_path("rawpersist");
    let mut w = RawConn::session(srv.addr(), 10_000);
    let mut r = RawConn::session(srv.addr(), 10_000);
    create_raw(&mut w, &base);
    let p = format!("{base}/p");
    // addWatch needs no node and no ACL.
    assert_eq!(r.call(op::ADD_WATCH, &Enc::new().str(&p).i32(1).bytes()).0.err, 0);
    create_raw(&mut w, &p);
    create_raw(&mut w, &format!("{p}/c"));
    set_data_raw(&mut w, &format!("{p}/c"), b"x");
    assert_eq!(w.delete(&format!("{p}/c")).err, 0);
    expect_event(&mut r, event::NODE_CREATED, &p);
    expect_event(&mut r, event::NODE_CREATED, &format!("{p}/c"));
    expect_event(&mut r, event::NODE_DATA_CHANGED, &format!("{p}/c"));
    expect_event(&mut r, event::NODE_DELETED, &format!("{p}/c"));
    // A bad addWatch mode is a marshalling error.
    let (h, _) = r.call(op::ADD_WATCH, &Enc::new().str(&p).i32(7).bytes());
    assert_eq!(h.err, code::MARSHALLING_ERROR);
}

#[test]
fn raw_set_watches_catch_up_and_registration() {
    let srv = Server::start();
    let base = unique_path("setwatches");
    let mut w = RawConn::session(srv.addr(), 10_000);
    create_raw(&mut w, &base);
    let changed = format!("{base}/changed");
    let same = format!("{base}/same");
    let deleted = format!("{base}/deleted");
    let appeared = format!("{base}/appeared");
    let absent = format!("{base}/absent");
    let kids = format!("{base}/kids");
    create_raw(&mut w, &changed);
    create_raw(&mut w, &same);
    create_raw(&mut w, &deleted);
    create_raw(&mut w, &kids);
    let rel = w.exists(&kids, false).unwrap().czxid; // the client "last saw" this zxid
    set_data_raw(&mut w, &changed, b"x");
    assert_eq!(w.delete(&deleted).err, 0);
    create_raw(&mut w, &appeared);
    create_raw(&mut w, &format!("{kids}/k"));

    let mut r = RawConn::session(srv.addr(), 10_000);
    let strs = |paths: &[&String]| {
        let mut e = Enc::new().i32(paths.len() as i32);
        for p in paths {
            e = e.str(p);
        }
        e.bytes()
    };
    let body = Enc::new()
        .i64(rel)
        .raw(&strs(&[&changed, &same, &deleted]))
        .raw(&strs(&[&appeared, &absent]))
        .raw(&strs(&[&kids, &same]))
        .bytes();
    r.send_request_xid(-8, op::SET_WATCHES, &body);
    let (h, b) = r.read_reply().expect("setWatches reply");
    assert_eq!((h.xid, h.err), (-8, 0));
    assert!(b.is_empty());
    // Catch-up events were sent before the reply.
    let mut got: Vec<(i32, String)> = r.events.drain(..).map(|e| (e.kind, e.path)).collect();
    got.sort();
    let mut want = vec![
        (event::NODE_DATA_CHANGED, changed.clone()),
        (event::NODE_DELETED, deleted.clone()),
        (event::NODE_CREATED, appeared.clone()),
        (event::NODE_CHILDREN_CHANGED, kids.clone()),
    ];
    want.sort();
    assert_eq!(got, want, "SetWatches catch-up events");
    // The others were registered as normal watches.
    set_data_raw(&mut w, &same, b"1");
    expect_event(&mut r, event::NODE_DATA_CHANGED, &same);
    create_raw(&mut w, &absent);
    expect_event(&mut r, event::NODE_CREATED, &absent);
    create_raw(&mut w, &format!("{same}/c"));
    expect_event(&mut r, event::NODE_CHILDREN_CHANGED, &same);
    // Catch-up watches were one-shot: changing them again fires nothing (sentinel).
    set_data_raw(&mut w, &changed, b"y");
    create_raw(&mut w, &format!("{kids}/k2"));
    let s = format!("{base}/sentinel");
    assert_eq!(r.exists(&s, true), Err(code::NO_NODE));
    create_raw(&mut w, &s);
    expect_event(&mut r, event::NODE_CREATED, &s);

    // SetWatches2 (105) with persistent and recursive watches: no catch-up, registered.
    let mut r2 = RawConn::session(srv.addr(), 10_000);
    let empty = Enc::new().i32(0).bytes();
    let body =
        Enc::new().i64(rel).raw(&empty).raw(&empty).raw(&empty).raw(&strs(&[&changed])).raw(&strs(&[&kids])).bytes();
    let (h, _) = r2.call(105, &body);
    assert_eq!(h.err, 0);
    assert!(r2.events.is_empty(), "no catch-up for persistent watches: {:?}", r2.events);
    set_data_raw(&mut w, &changed, b"z");
    create_raw(&mut w, &format!("{kids}/k3"));
    expect_event(&mut r2, event::NODE_DATA_CHANGED, &changed);
    expect_event(&mut r2, event::NODE_CREATED, &format!("{kids}/k3"));
}

#[test]
fn raw_watches_belong_to_the_connection_not_the_session() {
    let srv = Server::start();
    let base = unique_path("connwatch");
    let mut w = RawConn::session(srv.addr(), 10_000);
    create_raw(&mut w, &base);
    let p = format!("{base}/p");
    create_raw(&mut w, &p);
    let mut first = RawConn::session(srv.addr(), 10_000);
    first.get_data(&p, true).unwrap();
    assert_eq!(first.exists(&format!("{base}/later"), true), Err(code::NO_NODE));
    // The same session moves to a new connection: the old connection and its watches go.
    let mut second = RawConn::open(srv.addr());
    let r = second
        .handshake(&connect_request(0, 10_000, first.session_id, Some(&first.passwd.clone()), Some(false)))
        .expect("reattach");
    assert_eq!(r.session_id, first.session_id);
    first.expect_closed(Duration::from_secs(5), "old connection after the session moved");
    let s = format!("{base}/sentinel");
    assert_eq!(second.exists(&s, true), Err(code::NO_NODE));
    set_data_raw(&mut w, &p, b"x");
    create_raw(&mut w, &format!("{base}/later"));
    create_raw(&mut w, &s);
    expect_event(&mut second, event::NODE_CREATED, &s);
}

#[test]
fn raw_one_event_per_connection_per_change() {
    let srv = Server::start();
    let base = unique_path("onepercnxn");
    let mut w = RawConn::session(srv.addr(), 10_000);
    create_raw(&mut w, &base);
    let p = format!("{base}/p");
    create_raw(&mut w, &p);
    let mut r = RawConn::session(srv.addr(), 10_000);
    // Standard data watch + persistent watch on p + recursive watch on base.
    r.get_data(&p, true).unwrap();
    assert_eq!(r.call(op::ADD_WATCH, &Enc::new().str(&p).i32(0).bytes()).0.err, 0);
    assert_eq!(r.call(op::ADD_WATCH, &Enc::new().str(&base).i32(1).bytes()).0.err, 0);
    set_data_raw(&mut w, &p, b"1");
    set_data_raw(&mut w, &p, b"2");
    let s = format!("{base}/s");
    create_raw(&mut w, &s);
    expect_event(&mut r, event::NODE_DATA_CHANGED, &p);
    expect_event(&mut r, event::NODE_DATA_CHANGED, &p);
    // Creating s: NodeCreated for the recursive watch on base; no child event (recursive
    // watches do not get them and nobody has a child watch on base).
    expect_event(&mut r, event::NODE_CREATED, &s);
    // Delete p: data + child + persistent + recursive watches -> one NodeDeleted.
    let q = format!("{base}/q");
    let mut r2 = RawConn::session(srv.addr(), 10_000);
    r2.get_data(&p, true).unwrap();
    r2.get_children(&p, true).unwrap();
    r2.exists(&p, true).unwrap();
    assert_eq!(r2.exists(&q, true), Err(code::NO_NODE));
    assert_eq!(w.delete(&p).err, 0);
    create_raw(&mut w, &q);
    expect_event(&mut r2, event::NODE_DELETED, &p);
    expect_event(&mut r2, event::NODE_CREATED, &q);
    expect_event(&mut r, event::NODE_DELETED, &p);
    expect_event(&mut r, event::NODE_CREATED, &q);
}

// ------------------------------------------------------------------------------------------------
// Reconnect: the crate re-registers its watches with SetWatches on the new connection.

#[test]
fn watches_survive_a_reconnect_with_catch_up_events() {
    let srv = Server::start();
    let proxy = Proxy::start(srv.addr());
    run(async {
        let a = connect_with(proxy.addr(), Duration::from_secs(10)).await;
        let b = connect(srv.addr()).await;
        let id = a.session_id();
        let base = unique_path("reconnect");
        b.create(&base, b"", &persistent()).await.unwrap();
        let p = format!("{base}/p");
        let r = format!("{base}/r");
        let eph = format!("{base}/eph");
        b.create(&p, b"", &persistent()).await.unwrap();
        a.create(&eph, b"", &ephemeral()).await.unwrap();
        let (_, _, wp) = a.get_and_watch_data(&p).await.unwrap();
        let (none, wr) = a.check_and_watch_stat(&r).await.unwrap();
        assert!(none.is_none());
        // (zookeeper-client 0.9.3 does not re-register persistent watches after a reconnect:
        // `resend_watches` never selects SetWatches2. The server side of that is tested raw.)
        let s_path = format!("{base}/s");
        let (none, ws) = a.check_and_watch_stat(&s_path).await.unwrap();
        assert!(none.is_none());
        let mut state = a.state_watcher();

        // Drop A's connection and hold its reconnect while B changes things.
        proxy.pause();
        proxy.cut();
        within("disconnected state", async {
            while state.state() != zookeeper_client::SessionState::Disconnected {
                state.changed().await;
            }
        })
        .await;
        b.set_data(&p, b"changed while away", None).await.unwrap();
        b.create(&r, b"", &persistent()).await.unwrap();
        proxy.resume();
        within("reconnected state", async {
            while state.state() != zookeeper_client::SessionState::SyncConnected {
                state.changed().await;
            }
        })
        .await;

        // Catch-up events from SetWatches (relative to the last zxid A saw).
        assert_event(&next_oneshot(wp, "catch-up data change").await, EventType::NodeDataChanged, &p);
        assert_event(&next_oneshot(wr, "catch-up creation").await, EventType::NodeCreated, &r);
        // A watch with nothing to catch up on was re-registered: a later change fires it.
        b.create(&s_path, b"", &persistent()).await.unwrap();
        assert_event(&next_oneshot(ws, "re-registered exist watch").await, EventType::NodeCreated, &s_path);
        // Same session; its ephemeral survived.
        assert_eq!(a.session_id(), id);
        let st = a.check_stat(&eph).await.unwrap().expect("ephemeral survives a reconnect");
        assert_eq!(st.ephemeral_owner, id.0);
    });
    drop(proxy);
}

/// Events are delivered only to connections that may READ the node (CVE-2024-23944, fixed in
/// 3.8.4 and 3.9.2; not in 3.8.0).
#[test]
fn raw_events_are_filtered_by_read_permission() {
    let srv = Server::start();
    if srv.is_zookeeper_380() {
        eprintln!("note: ZooKeeper 3.8.0 predates watch-event ACL filtering; not tested");
        return;
    }
    let base = unique_path("aclwatch");
    let mut owner = RawConn::session(srv.addr(), 10_000);
    let (h, _) = owner.call(op::AUTH, &Enc::new().i32(0).str("digest").buf(Some(b"user:password")).bytes());
    assert_eq!(h.err, 0);
    create_raw(&mut owner, &base);
    let secret = format!("{base}/secret");
    let mut r = RawConn::session(srv.addr(), 10_000);
    assert_eq!(r.exists(&secret, true), Err(code::NO_NODE));
    // The node appears with an ACL that gives r no READ.
    let body = Enc::new()
        .str(&secret)
        .buf(Some(b"s"))
        .i32(1)
        .i32(31)
        .str("digest")
        .str("user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY=")
        .i32(0)
        .bytes();
    assert_eq!(owner.call(op::CREATE, &body).0.err, 0);
    // exists on it answers (ZooKeeper 3.8 checks no permission on exists) and sets the watch,
    // but the change event is not delivered: events are filtered by READ.
    assert!(r.exists(&secret, true).is_ok());
    set_data_raw(&mut owner, &secret, b"t");
    let s = format!("{base}/sentinel");
    assert_eq!(r.exists(&s, true), Err(code::NO_NODE));
    create_raw(&mut owner, &s);
    expect_event(&mut r, event::NODE_CREATED, &s);
}

#[test]
fn recursive_watch_under_concurrent_writers_loses_and_duplicates_nothing() {
    let srv = Server::start();
    run(async {
        let watcher = connect(srv.addr()).await;
        let setup = connect(srv.addr()).await;
        let base = unique_path("storm");
        setup.create(&base, b"", &persistent()).await.unwrap();
        for w in 0..4 {
            setup.create(&format!("{base}/w{w}"), b"0", &persistent()).await.unwrap();
        }
        let mut rw = watcher.watch(&base, AddWatchMode::PersistentRecursive).await.unwrap();
        let mut tasks = Vec::new();
        for w in 0..4 {
            let addr = srv.addr().to_string();
            let path = format!("{base}/w{w}");
            tasks.push(tokio::spawn(async move {
                let zk = connect(&addr).await;
                for i in 1..=50 {
                    zk.set_data(&path, i.to_string().as_bytes(), Some(i - 1)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            within("writer", t).await.unwrap();
        }
        let mut per_path = std::collections::HashMap::<String, usize>::new();
        let mut last_zxid = -1;
        for i in 0..200 {
            let ev = next_persistent(&mut rw, &format!("event {i} of 200")).await;
            assert_eq!(ev.event_type, EventType::NodeDataChanged, "{ev:?}");
            if ev.zxid != -1 {
                assert!(ev.zxid > last_zxid, "event zxids must increase: {last_zxid} then {}", ev.zxid);
                last_zxid = ev.zxid;
            }
            *per_path.entry(ev.path).or_default() += 1;
        }
        for w in 0..4 {
            assert_eq!(per_path.get(&format!("{base}/w{w}")), Some(&50), "{per_path:?}");
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(200), rw.changed()).await.is_err(),
            "no events beyond the 200 changes"
        );
    });
}
