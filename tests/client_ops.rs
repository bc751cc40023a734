//! Node operations through an independent client, the `zookeeper-client` crate.

mod common;

use std::time::Duration;

use common::*;
use zookeeper_client::{
    Acl, Acls, AuthId, AuthUser, Client, CreateMode, Error, MultiReadResult, MultiWriteError, MultiWriteResult,
    Permission, Stat,
};

fn opts(mode: CreateMode) -> zookeeper_client::CreateOptions<'static> {
    mode.with_acls(Acls::anyone_all())
}

/// Invariants of a freshly created node's Stat.
fn assert_new_node(stat: &Stat, data_len: usize, what: &str) {
    assert!(stat.czxid > 0, "{what}: czxid {}", stat.czxid);
    assert_eq!(stat.mzxid, stat.czxid, "{what}: mzxid == czxid");
    assert_eq!(stat.pzxid, stat.czxid, "{what}: pzxid == czxid");
    assert_eq!(stat.ctime, stat.mtime, "{what}: ctime == mtime");
    assert!((stat.ctime - now_ms()).abs() < 60_000, "{what}: ctime {} is not about now", stat.ctime);
    assert_eq!((stat.version, stat.cversion, stat.aversion), (0, 0, 0), "{what}");
    assert_eq!(stat.data_length as usize, data_len, "{what}: dataLength");
    assert_eq!(stat.num_children, 0, "{what}");
}

async fn stat(zk: &Client, path: &str) -> Stat {
    zk.check_stat(path)
        .await
        .unwrap_or_else(|e| panic!("exists {path}: {e}"))
        .unwrap_or_else(|| panic!("{path} does not exist"))
}

#[test]
fn create_in_every_mode() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        let sid = zk.session_id().0;
        let base = unique_path("modes");
        let (st, seq) = zk.create(&base, b"base", &persistent()).await.unwrap();
        assert_new_node(&st, 4, "persistent");
        assert_eq!(st.ephemeral_owner, 0);
        assert_eq!(seq.into_i64(), -1, "not sequential");
        assert_eq!(stat(&zk, &base).await, st, "create2 stat == exists stat");

        let eph = format!("{base}/eph");
        let (st, _) = zk.create(&eph, b"e", &ephemeral()).await.unwrap();
        assert_new_node(&st, 1, "ephemeral");
        assert_eq!(st.ephemeral_owner, sid, "ephemeralOwner is the session id");

        let (st, seq) = zk.create(&format!("{base}/ps-"), b"", &opts(CreateMode::PersistentSequential)).await.unwrap();
        assert_new_node(&st, 0, "persistent sequential");
        assert_eq!(seq.into_i64(), 1, "second child ever created under base");
        assert_eq!(st.ephemeral_owner, 0);
        assert!(zk.check_stat(&format!("{base}/ps-0000000001")).await.unwrap().is_some());

        let (st, seq) = zk.create(&format!("{base}/es-"), b"", &opts(CreateMode::EphemeralSequential)).await.unwrap();
        assert_eq!(seq.into_i64(), 2);
        assert_eq!(st.ephemeral_owner, sid);

        let container = format!("{base}/container");
        let (st, _) = zk.create(&container, b"c", &opts(CreateMode::Container)).await.unwrap();
        assert_new_node(&st, 1, "container");
        assert_eq!(st.ephemeral_owner, 0, "containers report ephemeralOwner 0");

        let ttl = format!("{base}/ttl");
        let (st, _) =
            zk.create(&ttl, b"t", &opts(CreateMode::Persistent).with_ttl(Duration::from_secs(3600))).await.unwrap();
        assert_new_node(&st, 1, "ttl");
        assert_eq!(st.ephemeral_owner, 0, "TTL nodes report ephemeralOwner 0");

        let (st, seq) = zk
            .create(
                &format!("{base}/ttlseq-"),
                b"",
                &opts(CreateMode::PersistentSequential).with_ttl(Duration::from_secs(3600)),
            )
            .await
            .unwrap();
        assert_eq!(seq.into_i64(), 5);
        assert_eq!(st.ephemeral_owner, 0);

        // Containers and TTL nodes may have children; ephemerals may not.
        zk.create(&format!("{container}/kid"), b"", &persistent()).await.unwrap();
        zk.create(&format!("{ttl}/kid"), b"", &persistent()).await.unwrap();
        assert_eq!(zk.create(&format!("{eph}/kid"), b"", &persistent()).await, Err(Error::NoChildrenForEphemerals));
        assert_eq!(zk.create(&format!("{eph}/kid"), b"", &ephemeral()).await, Err(Error::NoChildrenForEphemerals));

        // Parent bookkeeping: 6 children, all created through the API.
        let (mut children, pst) = zk.get_children(&base).await.unwrap();
        children.sort();
        assert_eq!(children, vec!["container", "eph", "es-0000000002", "ps-0000000001", "ttl", "ttlseq-0000000005"]);
        assert_eq!(pst.num_children, 6);
        assert_eq!(pst.cversion, 6);
        assert_eq!(pst.version, 0, "child creates do not change the parent's data version");
        let base_stat = stat(&zk, &base).await;
        assert_eq!(pst, base_stat);
        assert_eq!(base_stat.mzxid, base_stat.czxid, "parent mzxid unchanged");
        let last = stat(&zk, &format!("{base}/ttlseq-0000000005")).await;
        assert_eq!(base_stat.pzxid, last.czxid, "pzxid = zxid of the last child create");
    });
}

#[test]
fn sequential_numbering_counts_every_child_create() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        let base = unique_path("seq");
        zk.create(&base, b"", &persistent()).await.unwrap();
        let seq_opts = opts(CreateMode::PersistentSequential);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(zk.create(&format!("{base}/n-"), b"", &seq_opts).await.unwrap().1.into_i64());
        }
        assert_eq!(got, vec![0, 1, 2]);
        // A plain child create advances the counter too.
        zk.create(&format!("{base}/plain"), b"", &persistent()).await.unwrap();
        let (_, s) = zk.create(&format!("{base}/n-"), b"", &seq_opts).await.unwrap();
        assert_eq!(s.into_i64(), 4);
        // Deletes do not make numbers reusable.
        zk.delete(&format!("{base}/n-0000000004"), None).await.unwrap();
        zk.delete(&format!("{base}/n-0000000001"), None).await.unwrap();
        let (_, s) = zk.create(&format!("{base}/n-"), b"", &seq_opts).await.unwrap();
        assert_eq!(s.into_i64(), 5);
        // A sequential create on "parent/" is named by the number alone.
        let (_, s) = zk.create(&format!("{base}/"), b"", &seq_opts).await.unwrap();
        assert_eq!(s.into_i64(), 6);
        assert!(zk.check_stat(&format!("{base}/0000000006")).await.unwrap().is_some());
        // Stat: 7 creates, 2 deletes -> 5 children, cversion 2*7-5 = 9.
        let st = stat(&zk, &base).await;
        assert_eq!(st.num_children, 5);
        assert_eq!(st.cversion, 9);
        // Another parent has its own counter.
        let other = format!("{base}/plain");
        let (_, s) = zk.create(&format!("{other}/x-"), b"", &seq_opts).await.unwrap();
        assert_eq!(s.into_i64(), 0);
    });
}

#[test]
fn get_set_delete_with_versions_and_stat_relations() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        let base = unique_path("gsd");
        let (created, _) = zk.create(&base, b"one", &persistent()).await.unwrap();
        let (data, st) = zk.get_data(&base).await.unwrap();
        assert_eq!(data, b"one");
        assert_eq!(st, created);

        let s1 = zk.set_data(&base, b"two!", Some(0)).await.unwrap();
        assert_eq!(s1.version, 1);
        assert_eq!(s1.czxid, created.czxid);
        assert!(s1.mzxid > created.mzxid, "setData gets a new zxid");
        assert_eq!(s1.pzxid, created.pzxid, "setData does not touch pzxid");
        assert_eq!(s1.ctime, created.ctime);
        assert!(s1.mtime >= created.mtime);
        assert_eq!(s1.data_length, 4);
        assert_eq!((s1.cversion, s1.aversion), (0, 0));
        assert_eq!(zk.get_data(&base).await.unwrap(), (b"two!".to_vec(), s1));

        assert_eq!(zk.set_data(&base, b"x", Some(0)).await, Err(Error::BadVersion));
        // Unconditional set; unchanged data still bumps the version.
        let s2 = zk.set_data(&base, b"two!", None).await.unwrap();
        assert_eq!(s2.version, 2);
        assert!(s2.mzxid > s1.mzxid);
        // Empty data.
        let s3 = zk.set_data(&base, b"", Some(2)).await.unwrap();
        assert_eq!(s3.version, 3);
        assert_eq!(s3.data_length, 0);
        assert_eq!(zk.get_data(&base).await.unwrap().0, Vec::<u8>::new());

        // Child create/delete: parent pzxid and cversion move, mzxid and version do not.
        let kid = format!("{base}/kid");
        let (ks, _) = zk.create(&kid, b"", &persistent()).await.unwrap();
        let p1 = stat(&zk, &base).await;
        assert_eq!(p1.pzxid, ks.czxid);
        assert_eq!((p1.cversion, p1.num_children), (1, 1));
        assert_eq!((p1.mzxid, p1.version), (s3.mzxid, 3));
        assert_eq!(zk.delete(&base, None).await, Err(Error::NotEmpty));
        assert_eq!(zk.delete(&base, Some(99)).await, Err(Error::BadVersion), "BadVersion is checked before NotEmpty");
        zk.delete(&kid, Some(0)).await.unwrap();
        let p2 = stat(&zk, &base).await;
        assert!(p2.pzxid > ks.czxid, "child delete sets pzxid to its zxid");
        assert_eq!((p2.cversion, p2.num_children), (2, 0));
        assert_eq!((p2.mzxid, p2.version), (s3.mzxid, 3));

        assert_eq!(zk.delete(&base, Some(2)).await, Err(Error::BadVersion));
        zk.delete(&base, Some(3)).await.unwrap();
        assert_eq!(zk.get_data(&base).await, Err(Error::NoNode));
        assert_eq!(zk.check_stat(&base).await, Ok(None));
        assert_eq!(zk.set_data(&base, b"x", None).await, Err(Error::NoNode));
        assert_eq!(zk.delete(&base, None).await, Err(Error::NoNode));
    });
}

#[test]
fn error_codes_for_create_and_delete() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        let base = unique_path("errs");
        zk.create(&base, b"", &persistent()).await.unwrap();
        assert_eq!(zk.create(&base, b"", &persistent()).await, Err(Error::NodeExists));
        assert_eq!(zk.create(&base, b"", &ephemeral()).await, Err(Error::NodeExists));
        assert_eq!(zk.create(&format!("{base}/no/such"), b"", &persistent()).await, Err(Error::NoNode));
        assert_eq!(zk.delete(&format!("{base}/missing"), None).await, Err(Error::NoNode));
        // The fixed nodes cannot be deleted.
        for special in ["/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
            let r = zk.delete(special, None).await;
            assert!(matches!(r, Err(Error::BadArguments(_))), "delete {special}: {r:?}");
        }
        // Parent of a create is an ephemeral: NoChildrenForEphemerals, also for sequential.
        let eph = format!("{base}/eph");
        zk.create(&eph, b"", &ephemeral()).await.unwrap();
        assert_eq!(
            zk.create(&format!("{eph}/s-"), b"", &opts(CreateMode::PersistentSequential)).await.map(|_| ()),
            Err(Error::NoChildrenForEphemerals)
        );
        assert_eq!(
            zk.create(&format!("{eph}/c"), b"", &opts(CreateMode::Container)).await.map(|_| ()),
            Err(Error::NoChildrenForEphemerals)
        );
        // Nothing was left behind by the failures.
        let mut kids = zk.list_children(&base).await.unwrap();
        kids.sort();
        assert_eq!(kids, vec!["eph"]);
    });
}

#[test]
fn exists_and_children() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        let base = unique_path("kids");
        assert_eq!(zk.check_stat(&base).await, Ok(None));
        zk.create(&base, b"", &persistent()).await.unwrap();
        assert_eq!(zk.list_children(&base).await.unwrap(), Vec::<String>::new());
        let names = ["b", "a", "c-long-name", "ünïcode"];
        for n in names {
            zk.create(&format!("{base}/{n}"), n.as_bytes(), &persistent()).await.unwrap();
        }
        let mut listed = zk.list_children(&base).await.unwrap();
        listed.sort();
        let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(listed, want);
        let (mut listed2, st) = zk.get_children(&base).await.unwrap();
        listed2.sort();
        assert_eq!(listed2, want);
        assert_eq!(st, stat(&zk, &base).await);
        assert_eq!(st.num_children, 4);
        let (_, dst) = zk.get_data(&base).await.unwrap();
        assert_eq!(st, dst, "getChildren2 stat == getData stat");
        assert_eq!(zk.list_children(&format!("{base}/missing")).await, Err(Error::NoNode));
        assert_eq!(zk.get_children(&format!("{base}/missing")).await, Err(Error::NoNode));
        // exists on an existing node returns the same stat as getData.
        let (data, dst) = zk.get_data(&format!("{base}/a")).await.unwrap();
        assert_eq!(data, b"a");
        assert_eq!(stat(&zk, &format!("{base}/a")).await, dst);
        // The root lists "zookeeper"; the fixed nodes exist.
        assert!(zk.list_children("/").await.unwrap().contains(&"zookeeper".to_string()));
        let mut zkkids = zk.list_children("/zookeeper").await.unwrap();
        zkkids.sort();
        assert!(
            zkkids.contains(&"config".to_string()) && zkkids.contains(&"quota".to_string()),
            "/zookeeper children: {zkkids:?}"
        );
    });
}

#[test]
fn special_nodes_and_config_acl() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        assert!(zk.check_stat("/zookeeper/quota").await.unwrap().is_some());
        let (_, cfg_stat) = zk.get_config().await.unwrap();
        assert_eq!(cfg_stat.ephemeral_owner, 0);
        let (acl, _) = zk.get_acl("/zookeeper/config").await.unwrap();
        assert_eq!(acl, vec![Acl::new(Permission::READ, AuthId::anyone())], "/zookeeper/config is world-readable only");
        assert_eq!(zk.set_data("/zookeeper/config", b"x", None).await, Err(Error::NoAuth));
        let (root_acl, root) = zk.get_acl("/").await.unwrap();
        assert_eq!(root_acl, vec![Acl::new(Permission::ALL, AuthId::anyone())]);
        assert!(root.num_children >= 1);
    });
}

#[test]
fn acl_digest_auth_and_no_auth() {
    let srv = Server::start();
    run(async {
        let owner = connect(srv.addr()).await;
        within("auth", owner.auth("digest".to_string(), b"user:password".to_vec())).await.unwrap();
        let other = connect(srv.addr()).await;
        let base = unique_path("acl");
        owner.create(&base, b"", &persistent()).await.unwrap();

        // creator_all = auth scheme, expanded to the creator's digest id.
        let secret = format!("{base}/secret");
        owner.create(&secret, b"s3cret", &CreateMode::Persistent.with_acls(Acls::creator_all())).await.unwrap();
        let (acl, st) = owner.get_acl(&secret).await.unwrap();
        assert_eq!(acl, vec![Acl::new(Permission::ALL, AuthId::new("digest", "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY="))]);
        assert_eq!(st.aversion, 0);
        assert_eq!(owner.get_data(&secret).await.unwrap().0, b"s3cret");
        assert_eq!(other.get_data(&secret).await, Err(Error::NoAuth));
        assert_eq!(other.set_data(&secret, b"x", None).await, Err(Error::NoAuth));
        assert_eq!(other.list_children(&secret).await, Err(Error::NoAuth));
        assert_eq!(other.get_acl(&secret).await, Err(Error::NoAuth));
        assert_eq!(other.create(&format!("{secret}/kid"), b"", &persistent()).await.map(|_| ()), Err(Error::NoAuth));
        // exists checks no permission in ZooKeeper 3.8 (releases after 3.8.x check READ).
        assert!(other.check_stat(&secret).await.unwrap().is_some(), "exists answers without READ");
        // delete needs DELETE on the parent (base is world ALL): allowed for anyone.
        // setACL needs ADMIN on the node.
        assert_eq!(
            other.set_acl(&secret, &[Acl::new(Permission::ALL, AuthId::anyone())], None).await,
            Err(Error::NoAuth)
        );

        // The super user bypasses ACLs.
        let root = connect(srv.addr()).await;
        within("super auth", root.auth("digest".to_string(), b"super:test".to_vec())).await.unwrap();
        assert_eq!(root.get_data(&secret).await.unwrap().0, b"s3cret");

        // `auth` ACLs expand to every authenticated (non-ip) id of the creator.
        let double = connect(srv.addr()).await;
        within("auth 1", double.auth("digest".to_string(), b"user:password".to_vec())).await.unwrap();
        within("auth 2", double.auth("digest".to_string(), b"other:pw".to_vec())).await.unwrap();
        let both = format!("{base}/both");
        double.create(&both, b"", &CreateMode::Persistent.with_acls(Acls::creator_all())).await.unwrap();
        let (mut acl, _) = double.get_acl(&both).await.unwrap();
        acl.sort_by(|a, b| a.id().cmp(b.id()));
        let other_digest = {
            let (a, _) = double.get_acl(&both).await.unwrap();
            a.into_iter().find(|a| a.id().starts_with("other:")).expect("an entry for other").id().to_string()
        };
        assert_eq!(
            acl,
            vec![
                Acl::new(Permission::ALL, AuthId::new("digest", &other_digest)),
                Acl::new(Permission::ALL, AuthId::new("digest", "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY=")),
            ]
        );

        // A second client with the same credentials is the same identity.
        let twin = connect(srv.addr()).await;
        within("twin auth", twin.auth("digest".to_string(), b"user:password".to_vec())).await.unwrap();
        assert_eq!(twin.get_data(&secret).await.unwrap().0, b"s3cret");

        // Read-only node: read yes, write / create child no; delete of a child needs DELETE on
        // the parent.
        let ro = format!("{base}/ro");
        owner.create(&ro, b"r", &CreateMode::Persistent.with_acls(Acls::anyone_read())).await.unwrap();
        assert_eq!(other.get_data(&ro).await.unwrap().0, b"r");
        assert_eq!(other.set_data(&ro, b"x", None).await, Err(Error::NoAuth));
        assert_eq!(other.create(&format!("{ro}/kid"), b"", &persistent()).await.map(|_| ()), Err(Error::NoAuth));

        // Parent without DELETE for the world: a child cannot be deleted by "other".
        let nodel = format!("{base}/nodel");
        let nodel_acl = [
            Acl::new(Permission::READ | Permission::WRITE | Permission::CREATE | Permission::ADMIN, AuthId::anyone()),
            Acl::new(Permission::ALL, AuthId::new("digest", "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY=")),
        ];
        owner.create(&nodel, b"", &CreateMode::Persistent.with_acls(Acls::new(&nodel_acl))).await.unwrap();
        other.create(&format!("{nodel}/kid"), b"", &persistent()).await.unwrap();
        assert_eq!(other.delete(&format!("{nodel}/kid"), None).await, Err(Error::NoAuth));
        owner.delete(&format!("{nodel}/kid"), None).await.unwrap();

        // getACL without ADMIN masks digest ids.
        let masked = format!("{base}/masked");
        let masked_acl = [
            Acl::new(Permission::READ, AuthId::anyone()),
            Acl::new(Permission::ALL, AuthId::new("digest", "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY=")),
        ];
        owner.create(&masked, b"", &CreateMode::Persistent.with_acls(Acls::new(&masked_acl))).await.unwrap();
        let (seen_by_other, _) = other.get_acl(&masked).await.unwrap();
        assert_eq!(
            seen_by_other,
            vec![
                Acl::new(Permission::READ, AuthId::anyone()),
                Acl::new(Permission::ALL, AuthId::new("digest", "user:x")),
            ],
            "digest ids are masked for callers without ADMIN"
        );
        let (seen_by_owner, _) = owner.get_acl(&masked).await.unwrap();
        assert_eq!(seen_by_owner, masked_acl.to_vec());

        // ip scheme.
        let ip_ok = format!("{base}/ip-ok");
        let ip_acl = [Acl::new(Permission::ALL, AuthId::new("ip", "127.0.0.1"))];
        owner.create(&ip_ok, b"ip", &CreateMode::Persistent.with_acls(Acls::new(&ip_acl))).await.unwrap();
        assert_eq!(other.get_data(&ip_ok).await.unwrap().0, b"ip");
        let ip_no = format!("{base}/ip-no");
        let ip_acl2 = [Acl::new(Permission::ALL, AuthId::new("ip", "10.1.2.0/24"))];
        owner.create(&ip_no, b"", &CreateMode::Persistent.with_acls(Acls::new(&ip_acl2))).await.unwrap();
        assert_eq!(other.get_data(&ip_no).await, Err(Error::NoAuth));

        // Invalid ACLs.
        assert_eq!(
            other
                .create(&format!("{base}/noauth-creator"), b"", &CreateMode::Persistent.with_acls(Acls::creator_all()))
                .await
                .map(|_| ()),
            Err(Error::InvalidAcl),
            "auth scheme without an authenticated id"
        );
        let bad = [Acl::new(Permission::ALL, AuthId::new("digest", "nocolon"))];
        assert_eq!(
            owner
                .create(&format!("{base}/bad"), b"", &CreateMode::Persistent.with_acls(Acls::new(&bad)))
                .await
                .map(|_| ()),
            Err(Error::InvalidAcl)
        );
        assert_eq!(owner.set_acl(&ro, &[], None).await, Err(Error::InvalidAcl), "empty ACL list");
    });
}

#[test]
fn set_acl_versions_and_stat() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        let base = unique_path("setacl");
        let (created, _) = zk.create(&base, b"d", &persistent()).await.unwrap();
        let read_all = [Acl::new(Permission::READ | Permission::ADMIN, AuthId::anyone())];
        let s1 = zk.set_acl(&base, &read_all, Some(0)).await.unwrap();
        assert_eq!(s1.aversion, 1);
        assert_eq!(s1.version, 0, "setACL does not touch the data version");
        assert_eq!(s1.mzxid, created.mzxid, "setACL does not change mzxid");
        assert_eq!(s1.mtime, created.mtime);
        assert_eq!(zk.get_acl(&base).await.unwrap(), (read_all.to_vec(), s1));
        assert_eq!(
            zk.set_acl(&base, &read_all, Some(0)).await,
            Err(Error::BadVersion),
            "expected version is compared with aversion"
        );
        assert_eq!(zk.set_data(&base, b"x", None).await, Err(Error::NoAuth));
        let s2 = zk.set_acl(&base, &[Acl::new(Permission::ALL, AuthId::anyone())], Some(1)).await.unwrap();
        assert_eq!(s2.aversion, 2);
        zk.set_data(&base, b"x", Some(0)).await.unwrap();
        assert_eq!(zk.set_acl(&format!("{base}/missing"), &read_all, None).await, Err(Error::NoNode));
    });
}

#[test]
fn whoami_lists_auth_ids() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        let users = zk.list_auth_users().await.unwrap();
        assert_eq!(users, vec![AuthUser::new("ip", "127.0.0.1")]);
        within("auth", zk.auth("digest".to_string(), b"user:password".to_vec())).await.unwrap();
        let mut users = zk.list_auth_users().await.unwrap();
        users.sort_by(|a, b| a.scheme().cmp(b.scheme()));
        assert_eq!(users, vec![AuthUser::new("digest", "user"), AuthUser::new("ip", "127.0.0.1")]);
    });
}

#[test]
fn auth_failure_ends_the_session() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        let r = within("bad auth", zk.auth("nosuchscheme".to_string(), b"x".to_vec())).await;
        assert_eq!(r, Err(Error::AuthFailed));
        let mut watcher = zk.state_watcher();
        within("AuthFailed state", async {
            while watcher.state() != zookeeper_client::SessionState::AuthFailed {
                watcher.changed().await;
            }
        })
        .await;
    });
}

#[test]
fn multi_write_success_and_failure() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        let base = unique_path("multi");
        zk.create(&base, b"", &persistent()).await.unwrap();
        let a = format!("{base}/a");
        let b = format!("{base}/a/b");

        let mut w = zk.new_multi_writer();
        w.add_create(&a, b"A", &persistent()).unwrap();
        w.add_create(&b, b"B", &persistent()).unwrap();
        w.add_create(&format!("{base}/s-"), b"", &opts(CreateMode::PersistentSequential)).unwrap();
        w.add_set_data(&a, b"A2", Some(0)).unwrap();
        w.add_check_version(&a, 1).unwrap();
        let results = within("multi", w.commit()).await.unwrap();
        assert_eq!(results.len(), 5);
        let paths: Vec<String> = results
            .iter()
            .filter_map(|r| match r {
                MultiWriteResult::Create { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(paths, vec![a.clone(), b.clone(), format!("{base}/s-0000000001")]);
        let set_stat = match &results[3] {
            MultiWriteResult::SetData { stat } => *stat,
            other => panic!("expected SetData, got {other:?}"),
        };
        assert_eq!(set_stat.version, 1);
        assert_eq!(results[4], MultiWriteResult::Check);
        let sa = stat(&zk, &a).await;
        let sb = stat(&zk, &b).await;
        assert_eq!(sa.czxid, sb.czxid, "one zxid for the whole multi");
        assert_eq!(sa.mzxid, sa.czxid);
        assert_eq!(set_stat.mzxid, sa.czxid);
        assert_eq!(sa.ctime, sb.ctime);
        assert_eq!(sa, set_stat.clone_with_children(1, sb.czxid));
        assert_eq!(zk.get_data(&a).await.unwrap().0, b"A2");

        // Failure at index 2: nothing applied.
        let mut w = zk.new_multi_writer();
        w.add_create(&format!("{base}/new"), b"", &persistent()).unwrap();
        w.add_set_data(&a, b"A3", None).unwrap();
        w.add_delete(&format!("{base}/missing"), None).unwrap();
        w.add_set_data(&b, b"B2", None).unwrap();
        let err = within("failing multi", w.commit()).await.unwrap_err();
        assert_eq!(err, MultiWriteError::OperationFailed { index: 2, source: Error::NoNode });
        assert_eq!(zk.check_stat(&format!("{base}/new")).await, Ok(None));
        assert_eq!(zk.get_data(&a).await.unwrap(), (b"A2".to_vec(), sa));

        // Version check failure.
        let mut w = zk.new_multi_writer();
        w.add_check_version(&a, 0).unwrap();
        w.add_delete(&b, None).unwrap();
        assert_eq!(
            within("check multi", w.commit()).await.unwrap_err(),
            MultiWriteError::OperationFailed { index: 0, source: Error::BadVersion }
        );
        // NotEmpty inside multi, and a later op that would have fixed it does not count.
        let mut w = zk.new_multi_writer();
        w.add_delete(&a, None).unwrap();
        w.add_delete(&b, None).unwrap();
        assert_eq!(
            within("notempty multi", w.commit()).await.unwrap_err(),
            MultiWriteError::OperationFailed { index: 0, source: Error::NotEmpty }
        );
        // In the right order it works, and sees earlier ops.
        let mut w = zk.new_multi_writer();
        w.add_delete(&b, None).unwrap();
        w.add_delete(&a, None).unwrap();
        w.add_create(&a, b"again", &persistent()).unwrap();
        let r = within("reorder multi", w.commit()).await.unwrap();
        assert_eq!(r.len(), 3);
        let again = stat(&zk, &a).await;
        assert_eq!((again.version, again.num_children), (0, 0));
        assert!(again.czxid > sa.czxid);
    });
}

trait StatExt {
    fn clone_with_children(&self, num_children: i32, pzxid: i64) -> Stat;
}

impl StatExt for Stat {
    /// The stat of a node after `num_children` creates of children at zxid `pzxid`.
    fn clone_with_children(&self, num_children: i32, pzxid: i64) -> Stat {
        let mut s = *self;
        s.num_children = num_children;
        s.cversion = num_children;
        s.pzxid = pzxid;
        s
    }
}

#[test]
fn multi_read() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        let base = unique_path("mread");
        zk.create(&base, b"root", &persistent()).await.unwrap();
        zk.create(&format!("{base}/k1"), b"", &persistent()).await.unwrap();
        zk.create(&format!("{base}/k2"), b"", &persistent()).await.unwrap();
        let base_stat = stat(&zk, &base).await;
        let mut r = zk.new_multi_reader();
        r.add_get_data(&base).unwrap();
        r.add_get_children(&base).unwrap();
        r.add_get_data(&format!("{base}/missing")).unwrap();
        r.add_get_children(&format!("{base}/missing")).unwrap();
        let results = within("multiRead", r.commit()).await.unwrap();
        assert_eq!(results.len(), 4);
        match &results[0] {
            MultiReadResult::Data { data, stat } => {
                assert_eq!(data, b"root");
                assert_eq!(*stat, base_stat);
            }
            other => panic!("expected Data, got {other:?}"),
        }
        match &results[1] {
            MultiReadResult::Children { children } => {
                let mut c = children.clone();
                c.sort();
                assert_eq!(c, vec!["k1", "k2"]);
            }
            other => panic!("expected Children, got {other:?}"),
        }
        for r in &results[2..] {
            assert!(matches!(r, MultiReadResult::Error { err: Error::NoNode }), "expected NoNode, got {r:?}");
        }
    });
}

#[test]
fn all_children_number_and_ephemerals() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        let other = connect(srv.addr()).await;
        let base = unique_path("count");
        zk.create(&base, b"", &persistent()).await.unwrap();
        assert_eq!(zk.count_descendants_number(&base).await.unwrap(), 0);
        for p in ["a", "a/b", "a/b/c", "d"] {
            zk.create(&format!("{base}/{p}"), b"", &persistent()).await.unwrap();
        }
        zk.create(&format!("{base}/a/e1"), b"", &ephemeral()).await.unwrap();
        zk.create(&format!("{base}/e2"), b"", &ephemeral()).await.unwrap();
        other.create(&format!("{base}/d/theirs"), b"", &ephemeral()).await.unwrap();
        assert_eq!(zk.count_descendants_number(&base).await.unwrap(), 7);
        assert_eq!(zk.count_descendants_number(&format!("{base}/a")).await.unwrap(), 3);
        assert_eq!(zk.count_descendants_number(&format!("{base}/missing")).await, Err(Error::NoNode));

        let mut mine = zk.list_ephemerals(&base).await.unwrap();
        mine.sort();
        assert_eq!(mine, vec![format!("{base}/a/e1"), format!("{base}/e2")]);
        assert_eq!(zk.list_ephemerals(&format!("{base}/a")).await.unwrap(), vec![format!("{base}/a/e1")]);
        assert_eq!(other.list_ephemerals(&base).await.unwrap(), vec![format!("{base}/d/theirs")]);
        assert_eq!(zk.list_ephemerals(&format!("{base}/nothing-here")).await.unwrap(), Vec::<String>::new());
        // "/" lists every ephemeral of the session.
        let all = zk.list_ephemerals("/").await.unwrap();
        assert!(all.contains(&format!("{base}/e2")), "{all:?}");
    });
}

#[test]
fn sync_answers() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        let other = connect(srv.addr()).await;
        let base = unique_path("sync");
        other.create(&base, b"v", &persistent()).await.unwrap();
        within("sync", zk.sync(&base)).await.unwrap();
        assert_eq!(zk.get_data(&base).await.unwrap().0, b"v");
        // sync has no existence check.
        within("sync missing", zk.sync(&format!("{base}/missing"))).await.unwrap();
        within("sync root", zk.sync("/")).await.unwrap();
    });
}

#[test]
fn writes_get_increasing_zxids_and_reads_see_own_writes() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        let base = unique_path("zxid");
        let (st, _) = zk.create(&base, b"0", &persistent()).await.unwrap();
        let mut last = st.mzxid;
        for i in 1..=20 {
            let data = i.to_string();
            let s = zk.set_data(&base, data.as_bytes(), Some(i - 1)).await.unwrap();
            assert!(s.mzxid > last, "zxid must increase: {} then {}", last, s.mzxid);
            last = s.mzxid;
            let (got, gs) = zk.get_data(&base).await.unwrap();
            assert_eq!(got, data.as_bytes());
            assert_eq!(gs, s);
        }
        // Many writes issued without awaiting in between complete in order.
        let names: Vec<String> = (0..50).map(|i| format!("{base}/n{i:03}")).collect();
        let futs: Vec<_> = names.iter().map(|name| zk.create(name, b"", &persistent())).collect();
        let mut prev = last;
        for f in futs {
            let (s, _) = within("pipelined create", f).await.unwrap();
            assert!(s.czxid > prev, "pipelined creates in order");
            prev = s.czxid;
        }
        assert_eq!(stat(&zk, &base).await.num_children, 50);
    });
}

#[test]
fn container_and_ttl_nodes_are_reaped() {
    let srv = Server::start();
    run(async {
        let zk = connect(srv.addr()).await;
        let base = unique_path("reap");
        zk.create(&base, b"", &persistent()).await.unwrap();
        let container = format!("{base}/container");
        let never_used = format!("{base}/never-used");
        zk.create(&container, b"", &opts(CreateMode::Container)).await.unwrap();
        zk.create(&never_used, b"", &opts(CreateMode::Container)).await.unwrap();
        zk.create(&format!("{container}/kid"), b"", &persistent()).await.unwrap();
        let ttl = format!("{base}/ttl");
        zk.create(&ttl, b"", &opts(CreateMode::Persistent).with_ttl(Duration::from_millis(500))).await.unwrap();
        let ttl_parent = format!("{base}/ttl-with-kid");
        zk.create(&ttl_parent, b"", &opts(CreateMode::Persistent).with_ttl(Duration::from_millis(500))).await.unwrap();
        zk.create(&format!("{ttl_parent}/kid"), b"", &persistent()).await.unwrap();
        zk.delete(&format!("{container}/kid"), None).await.unwrap();

        // The reaper runs every znode.container.checkIntervalMs (1 s in the test config).
        eventually("empty container reaped", Duration::from_secs(10), || async {
            zk.check_stat(&container).await.unwrap().is_none()
        })
        .await;
        eventually("expired TTL node reaped", Duration::from_secs(10), || async {
            zk.check_stat(&ttl).await.unwrap().is_none()
        })
        .await;
        // A container that never had a child and a TTL node with a child stay.
        assert!(zk.check_stat(&never_used).await.unwrap().is_some());
        assert!(zk.check_stat(&ttl_parent).await.unwrap().is_some());
        // Reaping is a delete: the parent's cversion counts it.
        let st = stat(&zk, &base).await;
        assert_eq!(st.num_children, 2);
        assert_eq!(st.cversion, 2 * 4 - 2);
    });
}

#[test]
fn concurrent_conditional_updates_never_lose_a_write() {
    let srv = Server::start();
    run(async {
        let setup = connect(srv.addr()).await;
        let base = unique_path("cas");
        setup.create(&base, b"0", &persistent()).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let addr = srv.addr().to_string();
            let path = base.clone();
            tasks.push(tokio::spawn(async move {
                let zk = connect(&addr).await;
                let mut done = 0;
                let mut conflicts = 0;
                while done < 25 {
                    let (data, st) = zk.get_data(&path).await.unwrap();
                    let n: u64 = std::str::from_utf8(&data).unwrap().parse().unwrap();
                    match zk.set_data(&path, (n + 1).to_string().as_bytes(), Some(st.version)).await {
                        Ok(s) => {
                            assert_eq!(s.version, st.version + 1);
                            done += 1;
                        }
                        Err(Error::BadVersion) => conflicts += 1,
                        Err(e) => panic!("setData: {e}"),
                    }
                    assert!(conflicts < 10_000, "no progress");
                }
            }));
        }
        for t in tasks {
            within("CAS worker", t).await.unwrap();
        }
        let (data, st) = setup.get_data(&base).await.unwrap();
        assert_eq!(data, b"100", "every successful conditional update counted once");
        assert_eq!(st.version, 100);
    });
}

#[test]
fn concurrent_sequential_creates_get_unique_contiguous_numbers() {
    let srv = Server::start();
    run(async {
        let setup = connect(srv.addr()).await;
        let base = unique_path("seqrace");
        setup.create(&base, b"", &persistent()).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let addr = srv.addr().to_string();
            let path = format!("{base}/n-");
            tasks.push(tokio::spawn(async move {
                let zk = connect(&addr).await;
                let mut got = Vec::new();
                for _ in 0..25 {
                    let (_, seq) = zk.create(&path, b"", &opts(CreateMode::PersistentSequential)).await.unwrap();
                    got.push(seq.into_i64());
                }
                // Within one session, later creates get larger numbers.
                assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(within("sequential worker", t).await.unwrap());
        }
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<i64>>());
        assert_eq!(stat(&setup, &base).await.num_children, 100);
    });
}

#[test]
fn a_write_is_visible_to_other_clients_once_acknowledged() {
    let srv = Server::start();
    run(async {
        let writer = connect(srv.addr()).await;
        let readers = [connect(srv.addr()).await, connect(srv.addr()).await, connect(srv.addr()).await];
        let base = unique_path("visible");
        writer.create(&base, b"", &persistent()).await.unwrap();
        for i in 0..30 {
            let v = format!("v{i}");
            let st = writer.set_data(&base, v.as_bytes(), None).await.unwrap();
            for r in &readers {
                let (data, rs) = r.get_data(&base).await.unwrap();
                assert_eq!(data, v.as_bytes(), "standalone server: a read after the write's reply sees it");
                assert_eq!(rs, st);
            }
            let kid = format!("{base}/k{i}");
            writer.create(&kid, b"", &persistent()).await.unwrap();
            assert!(readers[i % 3].check_stat(&kid).await.unwrap().is_some());
        }
    });
}

#[test]
fn ttl_requires_extended_types() {
    let Some(srv) = Server::start_profile("no_extended_types", &[("extendedTypesEnabled", Some("false"))]) else {
        return;
    };
    run(async {
        let zk = connect(srv.addr()).await;
        let base = unique_path("nottl");
        zk.create(&base, b"", &persistent()).await.unwrap();
        let r = zk
            .create(&format!("{base}/ttl"), b"", &opts(CreateMode::Persistent).with_ttl(Duration::from_secs(60)))
            .await;
        assert_eq!(r.map(|_| ()), Err(Error::Unimplemented));
        // Containers do not need extended types.
        zk.create(&format!("{base}/c"), b"", &opts(CreateMode::Container)).await.unwrap();
    });
}
