//! A tiny host for brlock-core: a line-based lock service over stdin and stdout.
//!
//! ```text
//! cargo run -p brlock-core --example tiny_host < core/examples/tiny_host/demo.txt
//! ```
//!
//! Each line is a request (`lock alice/1 data 0 100 w wait`, `unlock …`, `test …`, `cancel …`,
//! `free CLIENT`), a client's answer to a GRANTED callback (`ok WAITER`, `fail WAITER`), or
//! `sleep MS` (`commands.rs`). The host owns a `Core`, feeds it events stamped with a real monotonic
//! clock, and carries out the actions it returns (`host.rs`). It decides nothing itself: every lock
//! rule is the core's.
//!
//! The loop is the shape of every host: wait for input *or* the core's one timer, whichever comes
//! first; hand the input (or a `Tick`) to the core; carry out the actions; re-arm the timer.

mod commands;
mod host;

use brlock_core::{Event, Instant};
use commands::Command;
use host::TinyHost;
use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError};

fn main() {
    let mut host = TinyHost::new(host::demo_config());
    // The core reads no clock: the host's monotonic clock, in ms since start, is its `now`.
    let start = std::time::Instant::now();
    let now = || Instant::from_millis(start.elapsed().as_millis() as u64);
    let show = |at: Instant, lines: Vec<String>| {
        let (mut out, ms) = (std::io::stdout().lock(), at.as_millis());
        for line in lines {
            if writeln!(out, "[{:>5}.{:03} s] {line}", ms / 1_000, ms % 1_000).is_err() {
                std::process::exit(0); // stdout closed: nobody is listening any more
            }
        }
    };

    // Stdin blocks, so it is read on a thread of its own; the loop waits on the channel with a
    // timeout, which is how the core's timer interrupts a wait for input.
    let (lines, input) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if lines.send(line).is_err() {
                return;
            }
        }
    });

    let mut line_no = 0;
    // While a script's `sleep` lasts, no input is read, but timers fire.
    let mut asleep_until: Option<Instant> = None;
    loop {
        // The ordering contract's promise, checked after every event: the store holds exactly the
        // core's locks. (A broken promise is a bug in the host or the core, not bad input.)
        if let Err(e) = host.check_store() {
            eprintln!("broken contract: {e}");
            std::process::exit(1);
        }
        let t = now();
        if host.next_wakeup().is_some_and(|at| at <= t) {
            // Due (or overdue): a tick runs whatever fell due by now. An early tick would do nothing.
            show(t, host.handle(t, Event::Tick));
            continue;
        }
        if asleep_until.is_some_and(|until| until <= t) {
            asleep_until = None;
        }
        let wake = [host.next_wakeup(), asleep_until]
            .into_iter()
            .flatten()
            .min();
        let timeout = wake.map(|at| std::time::Duration::from_millis((at - t).as_millis()));
        if let (Some(_), Some(timeout)) = (asleep_until, timeout) {
            std::thread::sleep(timeout);
            continue;
        }
        let line = match timeout {
            Some(timeout) => input.recv_timeout(timeout),
            None => input.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let text = match line {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(Ok(text)) => text,
            // End of input: what is still held is left in the store, as a stopped server leaves it.
            Err(RecvTimeoutError::Disconnected) => break,
            Ok(Err(e)) => {
                eprintln!("cannot read stdin: {e}");
                break;
            }
        };
        line_no += 1;
        let t = now();
        match commands::parse(line_no, &text) {
            Ok(None) => {}
            Ok(Some(Command::Sleep(span))) => asleep_until = Some(t + span),
            Ok(Some(Command::Event(event))) => show(t, host.handle(t, event)),
            // Bad input is answered and forgotten; the host keeps serving.
            Err(e) => show(t, vec![format!("line {line_no}: error: {e}")]),
        }
    }
}
