//! Znode path rules: validation (ZooKeeper's PathUtils), parent and child-name splitting.
//!
//! Pure string logic. Never looks at the tree.

/// ZooKeeper's `PathUtils.validatePath`: true when `path` is a valid znode path.
pub fn is_valid(path: &str) -> bool {
    if path.is_empty() || !path.starts_with('/') {
        return false;
    }
    if path.len() == 1 {
        return true;
    }
    if path.ends_with('/') {
        return false;
    }
    for seg in path[1..].split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return false;
        }
    }
    !path.chars().any(|c| {
        let c = c as u32;
        c == 0
            || (0x01..=0x1f).contains(&c)
            || (0x7f..=0x9f).contains(&c)
            || (0xd800..=0xf8ff).contains(&c)
            || (0xfff0..=0xffff).contains(&c)
            || c > 0xffff
    })
}

/// The parent of `path` (everything before the last `/`, or `/`). `None` if there is no `/`.
pub fn parent(path: &str) -> Option<&str> {
    let i = path.rfind('/')?;
    Some(if i == 0 { "/" } else { &path[..i] })
}

/// The last segment of `path`.
pub fn name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Joins a parent path and a child name.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// The nodes that always exist and can never be deleted.
pub fn is_system(path: &str) -> bool {
    matches!(path, "/" | "/zookeeper" | "/zookeeper/quota" | "/zookeeper/config")
}

/// Ancestors of `path` from its parent up to `/` (empty for `/`).
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut cur = Some(path);
    std::iter::from_fn(move || {
        let p = cur?;
        if p == "/" {
            cur = None;
            return None;
        }
        let par = parent(p)?;
        cur = Some(par);
        Some(par)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_matches_zookeeper() {
        for ok in ["/", "/a", "/a/b", "/.a", "/...", "/a.b/c"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in ["", "a", "/a/", "//", "/a//b", "/.", "/a/..", "/a\u{0}", "/a\u{1}", "/\u{d7ff}\u{e000}", "/😀"] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn parents_and_ancestors() {
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("x"), None);
        assert_eq!(name("/a/b"), "b");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(ancestors("/a/b/c").collect::<Vec<_>>(), vec!["/a/b", "/a", "/"]);
        assert_eq!(ancestors("/").count(), 0);
    }
}
