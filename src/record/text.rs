//! Human-readable rendering shared by the log and snapshot dumps: times, ACLs, node kinds.
//!
//! Pure formatting of values already in hand; converts epoch milliseconds to a calendar date
//! by arithmetic and never reads a clock.

use crate::proto::codes::perm;
use crate::proto::Acl;
use crate::tree::{kind_of_owner, Kind};
use std::fmt::Write;

/// Epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, proleptic Gregorian).
pub fn iso_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// Howard Hinnant's days-since-1970 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// ZooKeeper's permission string (`cdrwa` order), `-` for none.
pub fn perm_string(p: i32) -> String {
    let mut s = String::new();
    for (bit, c) in
        [(perm::CREATE, 'c'), (perm::DELETE, 'd'), (perm::READ, 'r'), (perm::WRITE, 'w'), (perm::ADMIN, 'a')]
    {
        if p & bit != 0 {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

/// `[scheme:id=perms, ...]`.
pub fn acl_string(acl: &[Acl]) -> String {
    let mut s = String::from("[");
    for (i, a) in acl.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{}:{}={}", a.id.scheme, a.id.id, perm_string(a.perms));
    }
    s.push(']');
    s
}

/// The node kind a stored owner encodes: `persistent`, `ephemeral(0x..)`, `container`, `ttl(ms)`.
pub fn owner_string(owner: i64) -> String {
    match kind_of_owner(owner) {
        Kind::Persistent => "persistent".into(),
        Kind::Ephemeral(s) => format!("ephemeral(0x{s:x})"),
        Kind::Container => "container".into(),
        Kind::Ttl(ttl) => format!("ttl({ttl}ms)"),
    }
}

/// `N bytes` or `null`.
pub fn data_string(data: Option<&[u8]>) -> String {
    match data {
        Some(d) => format!("{} bytes", d.len()),
        None => "null".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::codes::{CONTAINER_OWNER, TTL_MARKER};

    #[test]
    fn iso_dates() {
        assert_eq!(iso_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn perms_acls_owners() {
        assert_eq!(perm_string(perm::ALL), "cdrwa");
        assert_eq!(perm_string(perm::READ | perm::ADMIN), "ra");
        assert_eq!(perm_string(0), "-");
        assert_eq!(acl_string(&[Acl::world(perm::ALL), Acl::world(1)]), "[world:anyone=cdrwa, world:anyone=r]");
        assert_eq!(owner_string(0), "persistent");
        assert_eq!(owner_string(0x1234), "ephemeral(0x1234)");
        assert_eq!(owner_string(CONTAINER_OWNER), "container");
        assert_eq!(owner_string(TTL_MARKER | 5000), "ttl(5000ms)");
        assert_eq!(data_string(None), "null");
        assert_eq!(data_string(Some(b"")), "0 bytes");
    }
}
