//! A TCP connection whose kernel buffers are as small as Linux allows, so that a peer that stops
//! reading is felt after a few kilobytes, not megabytes.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};

/// Connects to `addr` (IPv4) with SO_RCVBUF and SO_SNDBUF set to `bytes` before the handshake:
/// the receive window is agreed on then, so setting it later does not shrink it. Linux doubles
/// the value and clamps it to its minimum.
pub fn connect_small_buffered(addr: SocketAddr, bytes: u32) -> io::Result<TcpStream> {
    let SocketAddr::V4(v4) = addr else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "small-buffered connections are IPv4 only",
        ));
    };
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: plain socket calls on a descriptor that `OwnedFd` owns (and closes on every error
    // path) from the moment it exists.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
            let rc = libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TcpStream::from(fd))
    }
}
