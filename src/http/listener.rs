//! The listening sockets.
//!
//! `std::net::TcpListener::bind` asks the kernel for an accept queue of 128. A burst of new
//! connections larger than that (a CI fleet starting at once, clients reconnecting after a
//! restart) overflows it: the kernel drops their handshakes and they wait out SYN
//! retransmission (one second, then two, four…) or fail. The broker asks for a deeper queue;
//! the kernel clamps it to `net.core.somaxconn`.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Socket, Type};

/// Connections the kernel may hold completed but not yet accepted.
const ACCEPT_QUEUE: i32 = 4096;

/// A listener on `addr`, set up as std's is (address reuse on, so a restart does not wait
/// out `TIME_WAIT`; `[::]` as the system's default dual stack) but for the queue.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(ACCEPT_QUEUE)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_an_ephemeral_port_and_accepts() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let _client = std::net::TcpStream::connect(addr).unwrap();
        assert!(listener.accept().is_ok());
    }

    #[test]
    fn a_taken_port_is_refused() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(bind(first.local_addr().unwrap()).is_err());
    }
}
