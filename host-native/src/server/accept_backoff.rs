//! Waiting after a failed `accept` (issue 13, row 9). When the process is out of file descriptors
//! (EMFILE, ENFILE) or buffers, `accept` fails at once and keeps failing until something is closed:
//! retrying at once spins a core at 100 %. Each consecutive failure doubles the wait, from 10 ms to
//! 1 s (Go's net/http waits 5 ms doubling to 1 s); a success resets it. Self-contained, so any
//! accept loop (NLM, HTTP) can use it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

const FIRST: Duration = Duration::from_millis(10);
const MOST: Duration = Duration::from_secs(1);

/// The wait before the next `accept` after consecutive failures.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    /// The next accept succeeded.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// How long to wait after one more failure.
    pub fn next_wait(&mut self) -> Duration {
        let wait = FIRST.saturating_mul(1 << self.failures.min(16)).min(MOST);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    /// Logs `error` of `listener` (a warning on the first of a run, as running out of descriptors
    /// is worth knowing) and waits.
    pub async fn failed(&mut self, error: &std::io::Error, listener: &str) {
        if self.failures == 0 {
            warn!(listener, %error, "accept failed; backing off until it works again");
        } else {
            debug!(listener, %error, "accept failed");
        }
        tokio::time::sleep(self.next_wait()).await;
    }
}

/// Accepts the next connection on `listener`, backing off while accepting fails.
pub async fn accept_with_backoff(
    listener: &TcpListener,
    backoff: &mut AcceptBackoff,
    name: &str,
) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                backoff.succeeded();
                return accepted;
            }
            Err(e) => backoff.failed(&e, name).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_a_second_and_reset_on_success() {
        let mut b = AcceptBackoff::default();
        let waits: Vec<u64> = (0..9).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.next_wait(), FIRST);
    }
}
