//! Tidy: source rules the compiler does not check (after TigerBeetle's tidy).
//!
//! - The pure layer (`src/proto`, `src/tree`, `src/txn`, `src/prep`, `src/session`, `src/watch`,
//!   `src/zab`) never names glommio, reads a clock, spawns a thread or draws randomness: it must
//!   stay deterministic so the simulator can drive it (time, seeds and I/O come in as inputs).
//!   Comments are not scanned, so a module doc may say what the module avoids.
//! - Every `.rs` file under `src/` starts with a `//!` doc comment saying what the module owns.
//! - No line under `src/` is longer than 120 characters.
//!
//! Standard library only. The scanners are tested on inline sources below, so a broken scanner
//! cannot pass silently.

use std::fs;
use std::path::{Path, PathBuf};

/// Top-level modules of the pure layer (a directory `src/NAME/` or a file `src/NAME.rs`).
const PURE_MODULES: &[&str] =
    &["proto", "tree", "txn", "prep", "session", "watch", "read", "sequencer", "record", "snapshot", "zab", "node"];

/// What a pure-layer module must not mention outside comments, and why.
const FORBIDDEN_IN_PURE: &[(&str, &str)] = &[
    ("glommio", "the runtime"),
    ("std::time::SystemTime", "reads the clock"),
    ("SystemTime::now", "reads the clock"),
    ("Instant::now", "reads the clock"),
    ("std::thread::spawn", "spawns a thread"),
    ("thread::spawn", "spawns a thread"),
    ("rand::", "draws randomness"),
    ("getrandom", "draws randomness"),
];

const MAX_LINE_CHARS: usize = 120;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every file under `dir`, sorted, recursively.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.expect("read_dir entry").path()).collect(),
        Err(e) => panic!("cannot read {}: {e}", dir.display()),
    };
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Is `rel` (a path relative to `src/`) part of the pure layer?
fn is_pure(rel: &Path) -> bool {
    let mut parts = rel.components();
    let first = match parts.next() {
        Some(c) => c.as_os_str().to_string_lossy().into_owned(),
        None => return false,
    };
    let is_dir_entry = parts.next().is_some();
    PURE_MODULES.iter().any(|m| if is_dir_entry { first == *m } else { first == format!("{m}.rs") })
}

/// The code of each line of a Rust source with comments removed (line and block comments,
/// nested block comments, doc comments). String and char literals are kept as they are and
/// are not mistaken for comments. Returns one entry per source line.
fn code_lines(src: &str) -> Vec<String> {
    #[derive(Clone, Copy)]
    enum State {
        Code,
        Str,
        RawStr(usize),
        Block(usize),
    }
    let mut state = State::Code;
    let mut out = Vec::new();
    for line in src.lines() {
        let chars: Vec<char> = line.chars().collect();
        let mut code = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            match state {
                State::Code => {
                    if c == '/' && next == Some('/') {
                        break;
                    } else if c == '/' && next == Some('*') {
                        state = State::Block(1);
                        i += 2;
                        continue;
                    } else if c == '"' {
                        state = State::Str;
                    } else if c == 'r'
                        && (next == Some('"') || next == Some('#'))
                        && (i == 0 || !is_ident_char(chars[i - 1]) || is_byte_prefix(&chars, i))
                    {
                        // Raw string r"..." / r#"..."# (also br"...").
                        let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
                        if chars.get(i + 1 + hashes) == Some(&'"') {
                            code.extend(&chars[i..i + 2 + hashes]);
                            state = State::RawStr(hashes);
                            i += 2 + hashes;
                            continue;
                        }
                    } else if c == '\'' {
                        // A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
                        if next == Some('\\') {
                            let end = chars.get(i + 3..).and_then(|r| r.iter().position(|&q| q == '\''));
                            let len = end.map_or(chars.len() - i, |e| e + 4);
                            code.extend(&chars[i..i + len]);
                            i += len;
                            continue;
                        } else if chars.get(i + 2) == Some(&'\'') {
                            code.extend(&chars[i..i + 3]);
                            i += 3;
                            continue;
                        }
                    }
                    code.push(c);
                }
                State::Str => {
                    code.push(c);
                    if c == '\\' {
                        if let Some(n) = next {
                            code.push(n);
                        }
                        i += 2;
                        continue;
                    } else if c == '"' {
                        state = State::Code;
                    }
                }
                State::RawStr(hashes) => {
                    code.push(c);
                    if c == '"' && chars[i + 1..].iter().take_while(|&&h| h == '#').count() >= hashes {
                        code.extend(&chars[i + 1..i + 1 + hashes]);
                        state = State::Code;
                        i += 1 + hashes;
                        continue;
                    }
                }
                State::Block(depth) => {
                    if c == '*' && next == Some('/') {
                        state = if depth == 1 { State::Code } else { State::Block(depth - 1) };
                        i += 2;
                        continue;
                    } else if c == '/' && next == Some('*') {
                        state = State::Block(depth + 1);
                        i += 2;
                        continue;
                    }
                }
            }
            i += 1;
        }
        out.push(code);
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `br"..."`: the `r` at `i` follows a `b` that itself starts a token.
fn is_byte_prefix(chars: &[char], i: usize) -> bool {
    i >= 1 && chars[i - 1] == 'b' && (i == 1 || !is_ident_char(chars[i - 2]))
}

/// Where `needle` occurs in `hay` as the start of a token (not inside a longer identifier).
fn find_token(hay: &str, needle: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(pos) = hay[from..].find(needle) {
        let at = from + pos;
        let before = hay[..at].chars().next_back();
        if !before.is_some_and(is_ident_char) {
            return Some(at);
        }
        from = at + needle.len();
    }
    None
}

/// Pure-layer violations in one source: `name:line: message`.
fn check_pure(name: &str, src: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, code) in code_lines(src).iter().enumerate() {
        if let Some((token, why)) = FORBIDDEN_IN_PURE.iter().find(|(t, _)| find_token(code, t).is_some()) {
            found.push(format!("{name}:{}: pure-layer module mentions `{token}` ({why})", n + 1));
        }
    }
    found
}

/// A Rust source must open (after blank lines) with a `//!` module doc comment.
fn check_module_doc(name: &str, src: &str) -> Vec<String> {
    match src.lines().find(|l| !l.trim().is_empty()) {
        Some(first) if first.trim_start().starts_with("//!") => Vec::new(),
        _ => vec![format!("{name}:1: no leading `//!` doc comment saying what this module owns")],
    }
}

/// Lines longer than `MAX_LINE_CHARS` characters.
fn check_line_length(name: &str, src: &str) -> Vec<String> {
    src.lines()
        .enumerate()
        .filter(|(_, l)| l.chars().count() > MAX_LINE_CHARS)
        .map(|(n, l)| format!("{name}:{}: line is {} characters (max {MAX_LINE_CHARS})", n + 1, l.chars().count()))
        .collect()
}

#[test]
fn tidy_src() {
    let src = src_dir();
    let mut files = Vec::new();
    walk(&src, &mut files);
    assert!(!files.is_empty(), "no files under {}", src.display());

    let mut violations = Vec::new();
    let mut scanned_pure = 0;
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src/");
        let name = format!("src/{}", rel.display());
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                violations.push(format!("{name}: cannot read as UTF-8 text: {e}"));
                continue;
            }
        };
        violations.extend(check_line_length(&name, &text));
        if path.extension().is_some_and(|e| e == "rs") {
            violations.extend(check_module_doc(&name, &text));
            if is_pure(rel) {
                scanned_pure += 1;
                violations.extend(check_pure(&name, &text));
            }
        }
    }
    println!("tidy: {} files under src/, {scanned_pure} in the pure layer", files.len());
    assert!(violations.is_empty(), "tidy found {} problem(s):\n{}", violations.len(), violations.join("\n"));
}

#[test]
fn pure_layer_scanner_catches_and_spares() {
    let bad = "//! doc\n\
               use glommio::LocalExecutor;\n\
               fn f() { let t = std::time::Instant::now(); }\n\
               fn g() { std::thread::spawn(|| ()); }\n\
               fn h() -> u8 { rand::random() }\n\
               fn i() { let _ = std::time::SystemTime::now(); }\n\
               fn j() { getrandom::getrandom(&mut [0u8; 4]).unwrap(); }\n\
               fn k() { let s = \"http://example\"; glommio::yield_if_needed(); }\n";
    let found = check_pure("bad.rs", bad);
    let lines: Vec<&str> = found.iter().map(|v| v.split(": ").next().unwrap()).collect();
    assert_eq!(
        lines,
        ["bad.rs:2", "bad.rs:3", "bad.rs:4", "bad.rs:5", "bad.rs:6", "bad.rs:7", "bad.rs:8"],
        "{found:#?}"
    );
    assert!(found[0].contains("`glommio`"), "{found:#?}");
    assert!(found[1].contains("`Instant::now`"), "{found:#?}");

    let fine = "//! Pure: no glommio, no Instant::now, no thread::spawn, no rand::.\n\
                /// Never calls getrandom.\n\
                fn f(op: Operand) -> u8 { Operand::brand::x(); 0 } // rand:: here is a comment\n\
                /* a block comment: glommio\n   spanning lines: getrandom */ fn g() {}\n\
                fn h<'a>(s: &'a str) -> char { let _ = \"// not a comment\"; '\"' }\n\
                fn i() -> &'static str { r#\"raw \" // still a string\"# }\n\
                fn j() -> char { '\\'' }\n";
    assert_eq!(check_pure("fine.rs", fine), Vec::<String>::new());

    // A string that hides `//` does not hide code after it; a lifetime is not a char literal.
    let tricky = "fn f<'a>(x: &'a u8) { let _ = \"a//b\"; let _ = getrandom::fill; }\n";
    assert_eq!(check_pure("t.rs", tricky).len(), 1);
}

#[test]
fn pure_layer_paths() {
    assert!(is_pure(Path::new("proto/jute.rs")));
    assert!(is_pure(Path::new("zab/election/vote.rs")));
    assert!(is_pure(Path::new("tree.rs")));
    assert!(!is_pure(Path::new("runtime/pool.rs")));
    assert!(!is_pure(Path::new("protocol.rs")));
    assert!(!is_pure(Path::new("lib.rs")));
}

#[test]
fn module_doc_and_line_length_checks() {
    assert!(check_module_doc("a.rs", "\n//! Owns things.\nfn f() {}\n").is_empty());
    assert_eq!(check_module_doc("b.rs", "/// item doc\nfn f() {}\n").len(), 1);
    assert_eq!(check_module_doc("c.rs", "use std::io;\n//! late\n").len(), 1);
    assert_eq!(check_module_doc("d.rs", "").len(), 1);

    let ok = "x".repeat(MAX_LINE_CHARS);
    let wide = "─".repeat(MAX_LINE_CHARS); // 3 bytes each: characters are counted, not bytes
    let long = "y".repeat(MAX_LINE_CHARS + 1);
    let text = format!("{ok}\n{wide}\n{long}\n");
    assert_eq!(check_line_length("e.rs", &text), ["e.rs:3: line is 121 characters (max 120)"]);
}
