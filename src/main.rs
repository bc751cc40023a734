//! The `corezk` binary: parses the command line and starts the server.

use corezk::config::{parse_args, Command, USAGE};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
