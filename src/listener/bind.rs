//! Binding the webhook and metrics ports with a listen backlog of their own.

use std::{io, net::SocketAddr};

/// Listen backlog: connections the kernel queues for `accept(2)` (capped by
/// `net.core.somaxconn`, 4096 on current kernels). Where connections wait when all
/// `--max-connections` slots are taken; std's default (128) drops the handshakes of a
/// burst beyond it.
pub const LISTEN_BACKLOG: i32 = 1024;

/// A TCP listener on `addr` with [`LISTEN_BACKLOG`] (SO_REUSEADDR as std sets it).
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}
