//! `nlm-script ADDR`: sends the NLM v4 calls of a script (`brlock_tests::script`'s command
//! language, one command a line on standard input) to brlockd at ADDR over TCP and prints each
//! answer on its own line as it comes. For tests in other languages — the visualiser's live-mode
//! browser test (host-wasm/e2e/live.test.mjs) drives a real brlockd with it.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use brlock_native::nlm::NlmVersion;
use brlock_testkit::client::{NlmClient, Transport};
use brlock_tests::script;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: SocketAddr = match args.as_slice() {
        [addr] => match addr.parse() {
            Ok(addr) => addr,
            Err(e) => {
                eprintln!("nlm-script: bad address {addr:?}: {e}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: nlm-script ADDR:PORT < script");
            return ExitCode::from(2);
        }
    };
    let mut client = match NlmClient::connect(Transport::Tcp, addr, NlmVersion::V4) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("nlm-script: cannot connect to {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let command = line.trim();
        if command.is_empty() || command.starts_with('#') {
            continue;
        }
        let answer = script::execute(&mut client, command);
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    ExitCode::SUCCESS
}
