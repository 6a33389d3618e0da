//! brlockd's HTTP endpoints as a test reads them: one GET, and a sample out of `/metrics`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a GET may take in all before it counts as lost.
pub const GET_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET path` from `addr` over a connection of its own: the status code and the body.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut http = TcpStream::connect_timeout(&addr, GET_TIMEOUT)?;
    http.set_read_timeout(Some(GET_TIMEOUT))?;
    http.set_write_timeout(Some(GET_TIMEOUT))?;
    write!(
        http,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    http.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no end of headers"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("status line {head:?}"))
        })?;
    Ok((status, body.to_string()))
}

/// The value of the sample `name` (with its labels exactly as exposed, e.g.
/// `brlock_store_failures_total{kind="error"}`) in a metrics page, if it is there.
pub fn metric_value(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
}
