//! ACL checks and the identities a connection holds (ZooKeeper's checkACL and auth providers).
//!
//! Pure: decides whether a set of identities may do an operation on a node. Never stores ACLs.

use crate::proto::codes::perm;
use crate::proto::{Acl, Id};
use base64::Engine;
use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// Who a connection is: its client address, the ids added by auth packets, and super status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    pub ip: IpAddr,
    /// Ids added by auth packets (digest and ip), in the order added.
    pub ids: Vec<Id>,
    pub is_super: bool,
}

impl AuthInfo {
    pub fn new(ip: IpAddr) -> AuthInfo {
        AuthInfo { ip, ids: Vec::new(), is_super: false }
    }

    /// The ids `auth` ACL entries expand to (authenticated providers only: not ip).
    pub fn authenticated_ids(&self) -> impl Iterator<Item = &Id> {
        self.ids.iter().filter(|i| i.scheme != "ip")
    }
}

/// `user:base64(sha1(user:password))`, ZooKeeper's DigestAuthenticationProvider digest.
pub fn digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

/// True when `ip` falls inside `spec` (an address or `addr/bits`).
pub fn ip_matches(spec: &str, ip: IpAddr) -> bool {
    let (addr, bits) = match spec.split_once('/') {
        Some((a, b)) => match b.parse::<u32>() {
            Ok(b) => (a, Some(b)),
            Err(_) => return false,
        },
        None => (spec, None),
    };
    let Ok(net) = addr.parse::<IpAddr>() else { return false };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => prefix_eq(&n.octets(), &i.octets(), bits.unwrap_or(32)),
        (IpAddr::V6(n), IpAddr::V6(i)) => prefix_eq(&n.octets(), &i.octets(), bits.unwrap_or(128)),
        (IpAddr::V4(n), IpAddr::V6(i)) => match i.to_ipv4_mapped() {
            Some(i) => prefix_eq(&n.octets(), &i.octets(), bits.unwrap_or(32)),
            None => false,
        },
        _ => false,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u32) -> bool {
    if bits as usize > a.len() * 8 {
        return false;
    }
    let full = (bits / 8) as usize;
    if a[..full] != b[..full] {
        return false;
    }
    let rem = bits % 8;
    if rem == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rem);
    a[full] & mask == b[full] & mask
}

/// Whether `spec` is a valid ip ACL id.
pub fn ip_spec_valid(spec: &str) -> bool {
    let (addr, bits) = match spec.split_once('/') {
        Some((a, b)) => (a, b.parse::<u32>().ok()),
        None => (spec, Some(0)),
    };
    match (addr.parse::<IpAddr>(), bits) {
        (Ok(IpAddr::V4(_)), Some(b)) => b <= 32,
        (Ok(IpAddr::V6(_)), Some(b)) => b <= 128,
        _ => false,
    }
}

/// ZooKeeper's checkACL: may `auth` do `required` on a node with `acl`?
pub fn allowed(acl: &[Acl], required: i32, auth: &AuthInfo) -> bool {
    if auth.is_super || acl.is_empty() {
        return true;
    }
    acl.iter().any(|a| {
        if a.perms & required == 0 {
            return false;
        }
        match a.id.scheme.as_str() {
            "world" => a.id.id == "anyone",
            "ip" => ip_matches(&a.id.id, auth.ip) || auth.ids.iter().any(|i| i.scheme == "ip" && i.id == a.id.id),
            scheme => auth.ids.iter().any(|i| i.scheme == scheme && i.id == a.id.id),
        }
    })
}

/// An ACL list ZooKeeper rejects with InvalidACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidAcl;

/// ZooKeeper's fixupACL: validates an ACL list and expands `auth` entries.
pub fn fixup(acl: &[Acl], auth: &AuthInfo) -> Result<Vec<Acl>, InvalidAcl> {
    if acl.is_empty() {
        return Err(InvalidAcl);
    }
    // Duplicates are dropped from the request only: an `auth` entry may still expand to an
    // id listed beside it, and ZooKeeper stores both.
    let mut unique: Vec<&Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    let mut out: Vec<Acl> = Vec::with_capacity(unique.len());
    for a in unique {
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => out.push(a.clone()),
            "auth" => {
                let mut any = false;
                for id in auth.authenticated_ids() {
                    any = true;
                    out.push(Acl { perms: a.perms, id: id.clone() });
                }
                if !any {
                    return Err(InvalidAcl);
                }
            }
            "digest" => {
                let parts: Vec<&str> = a.id.id.split(':').collect();
                let mut n = parts.len();
                while n > 0 && parts[n - 1].is_empty() {
                    n -= 1;
                }
                if n != 2 {
                    return Err(InvalidAcl);
                }
                out.push(a.clone())
            }
            "ip" if ip_spec_valid(&a.id.id) => out.push(a.clone()),
            _ => return Err(InvalidAcl),
        }
    }
    Ok(out)
}

/// getACL's masking: without ADMIN, digest ids show as `user:x`.
pub fn mask_digests(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            if a.id.scheme == "digest" {
                let user = a.id.id.split(':').next().unwrap_or("");
                Acl { perms: a.perms, id: Id { scheme: "digest".into(), id: format!("{user}:x") } }
            } else {
                a.clone()
            }
        })
        .collect()
}

/// The permission an ACL grants to `world:anyone` readers, used for `/zookeeper/config`.
pub fn read_only_world() -> Vec<Acl> {
    vec![Acl::world(perm::READ)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_auth(up: &str) -> AuthInfo {
        let mut a = AuthInfo::new("127.0.0.1".parse().unwrap());
        a.ids.push(Id { scheme: "digest".into(), id: digest(up) });
        a
    }

    #[test]
    fn digest_vectors() {
        assert_eq!(digest("user:password"), "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY=");
        assert_eq!(digest("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }

    #[test]
    fn checks() {
        let acl = vec![Acl { perms: perm::READ, id: Id { scheme: "digest".into(), id: digest("u:p") } }];
        assert!(allowed(&acl, perm::READ, &digest_auth("u:p")));
        assert!(!allowed(&acl, perm::WRITE, &digest_auth("u:p")));
        assert!(!allowed(&acl, perm::READ, &digest_auth("u:q")));
        let ip = vec![Acl { perms: 31, id: Id { scheme: "ip".into(), id: "127.0.0.0/8".into() } }];
        assert!(allowed(&ip, perm::READ, &digest_auth("u:q")));
        let ip = vec![Acl { perms: 31, id: Id { scheme: "ip".into(), id: "10.0.0.1".into() } }];
        assert!(!allowed(&ip, perm::READ, &digest_auth("u:q")));
        assert!(allowed(&[], perm::READ, &digest_auth("u:q")));
    }

    #[test]
    fn fixup_rules() {
        let anon = AuthInfo::new("127.0.0.1".parse().unwrap());
        let auth_acl = vec![Acl { perms: 31, id: Id { scheme: "auth".into(), id: "".into() } }];
        assert!(fixup(&auth_acl, &anon).is_err());
        assert_eq!(fixup(&auth_acl, &digest_auth("u:p")).unwrap()[0].id.id, digest("u:p"));
        assert!(fixup(&[], &anon).is_err());
        let bad_world = vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "x".into() } }];
        assert!(fixup(&bad_world, &anon).is_err());
        let bad_digest = vec![Acl { perms: 31, id: Id { scheme: "digest".into(), id: "nocolon".into() } }];
        assert!(fixup(&bad_digest, &anon).is_err());
        let dup = vec![Acl::world(31), Acl::world(31)];
        assert_eq!(fixup(&dup, &anon).unwrap().len(), 1);
        // `auth` expanding to an id listed beside it keeps both entries, as ZooKeeper does.
        let u = digest_auth("u:p");
        let both = vec![auth_acl[0].clone(), Acl { perms: 31, id: Id { scheme: "digest".into(), id: digest("u:p") } }];
        let fixed = fixup(&both, &u).unwrap();
        assert_eq!(fixed.len(), 2);
        assert_eq!(fixed[0], fixed[1]);
    }
}
