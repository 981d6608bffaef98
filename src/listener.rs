//! TCP listeners as Go's net.Listen makes them, and so etcd's: SO_REUSEADDR and the largest
//! accept queue the kernel allows (net.core.somaxconn, 4096 here). std and tokio ask for 128,
//! and back-to-back connects past it waited a second each for a SYN retry. The client, metrics
//! and peer listeners all come from here.

use std::net::{TcpListener, ToSocketAddrs};

/// Listens on `addr` (std binds with SO_REUSEADDR), widens the accept queue to the kernel's
/// largest, and leaves the listener non-blocking for tokio.
pub fn listen(addr: impl ToSocketAddrs) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    widen_accept_queue(&listener)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Linux takes a second listen() on a listening socket as its new bound; the kernel caps it at
/// somaxconn.
fn widen_accept_queue(l: &TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: listen() on the descriptor of a socket `l` owns and keeps open.
    if unsafe { libc::listen(l.as_raw_fd(), i32::MAX) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
