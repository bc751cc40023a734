//! The `corezk` binary: parses the command line and starts the server, runs a whole ensemble on
//! this host (`corezk ensemble`), or runs one of the operator tools (`corezk log dump`,
//! `corezk snapshot dump`).

use corezk::config::{parse_args, Command, USAGE};
use std::path::Path;

fn dump_log(path: &Path) -> Result<(), String> {
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        corezk::log::list(path, corezk::log::LOG_PREFIX).into_iter().map(|(_, p)| p).collect()
    } else {
        vec![path.to_path_buf()]
    };
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        println!("# {}", f.display());
        match corezk::record::scan(&bytes) {
            Ok(scan) => {
                for r in &scan.records {
                    print!("{}", corezk::record::describe(r));
                }
                if let Some(t) = &scan.torn {
                    println!("# torn record at offset {}: {} ({} bytes)", t.offset, t.reason, t.discarded_bytes);
                }
                println!("# {} records, {} bytes in use", scan.records.len(), scan.end);
            }
            Err(c) => return Err(format!("{}: corrupt record at offset {}: {}", f.display(), c.offset, c.reason)),
        }
    }
    Ok(())
}

fn dump_snapshot(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let s = corezk::snapshot::decode(&bytes).map_err(|e| format!("{}: {e:?}", path.display()))?;
    print!("{}", corezk::snapshot::describe(&s));
    Ok(())
}

fn tool(args: &[String]) -> Option<Result<(), String>> {
    match (args.first().map(String::as_str), args.get(1).map(String::as_str), args.get(2)) {
        (Some("log"), Some("dump"), Some(p)) => Some(dump_log(Path::new(p))),
        (Some("snapshot"), Some("dump"), Some(p)) => Some(dump_snapshot(Path::new(p))),
        (Some("ensemble"), Some("--help" | "-h"), _) => {
            print!("{}", corezk::launch::USAGE);
            Some(Ok(()))
        }
        (Some("ensemble"), _, _) => Some(corezk::launch::parse(&args[1..]).and_then(|p| corezk::launch::run(&p))),
        (Some("log" | "snapshot"), _, _) => {
            Some(Err("usage: corezk log dump <file|dir> | corezk snapshot dump <file>".into()))
        }
        _ => None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(r) = tool(&args) {
        if let Err(e) = r {
            eprintln!("corezk: error: {e}");
            std::process::exit(1);
        }
        return;
    }
    match parse_args(&args) {
        Ok(Command::Help) => print!("{USAGE}"),
        Ok(Command::Version) => println!("corezk {}", env!("CARGO_PKG_VERSION")),
        Ok(Command::Serve(cfg)) => {
            if let Err(e) = corezk::runtime::serve(*cfg) {
                eprintln!("corezk: error: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("corezk: error: {e}");
            std::process::exit(2);
        }
    }
}
