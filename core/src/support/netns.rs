//! Connecting to an address inside another network namespace, such as a
//! container's, without anything published on the host.
//!
//! A socket belongs to the namespace it was created in, whatever thread
//! later uses it. So a short-lived thread enters the target namespace,
//! creates the socket and ends; the connect and all I/O then run on tokio as
//! usual. Because the thread ends right after, the namespace it entered never
//! leaks into any other work, and nothing has to be switched back.
//! RootlessKit's port driver relies on the same property.
//!
//! Entering a namespace needs `CAP_SYS_ADMIN` (which a process that drives the
//! Docker socket effectively has); [`available`] tells whether this process can.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// Creates a TCP socket for `addr`'s family inside the namespace at `netns`,
/// on a thread of its own that ends right after; the receiver gets the socket.
fn socket_in(netns: &str, addr: SocketAddr) -> io::Result<oneshot::Receiver<io::Result<TcpSocket>>> {
    let ns = File::open(netns)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open network namespace {netns}: {e}")))?;
    let name = netns.to_owned();
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("pilotlight-netns".into())
        .spawn(move || {
            let made = setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("cannot enter network namespace {name}: {e}"),
                    )
                })
                .and_then(|()| if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() });
            let _ = tx.send(made);
        })
        .map_err(|e| io::Error::other(format!("cannot start a thread to enter a network namespace: {e}")))?;
    Ok(rx)
}

/// On the calling thread, which must end afterwards: enters `ns` and makes the socket.
fn enter_and_make(ns: &File, name: &str, addr: SocketAddr) -> io::Result<TcpSocket> {
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
        io::Error::new(io::ErrorKind::PermissionDenied, format!("cannot enter network namespace {name}: {e}"))
    })?;
    if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
}

const NO_ANSWER: &str = "the namespace thread ended without an answer";

/// Connects to `addr` inside the network namespace at `netns` (a path such as
/// `/proc/<pid>/ns/net` or `/var/run/docker/netns/<id>`), with `TCP_NODELAY`.
pub async fn connect(netns: &str, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = socket_in(netns, addr)?.await.map_err(|_| io::Error::other(NO_ANSWER))??;
    let stream = tokio::time::timeout(timeout, socket.connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr} in {netns} timed out")))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Whether this process may enter network namespaces: it tries its own,
/// which changes nothing but needs the same capability as any other.
pub fn available() -> Result<(), String> {
    let own = "/proc/self/ns/net";
    let ns = File::open(own).map_err(|e| format!("cannot open {own}: {e}"))?;
    // A thread of its own that ends here, as for every connect; joining it
    // blocks only for the setns, so this is fine on an async caller at start-up.
    std::thread::spawn(move || enter_and_make(&ns, own, SocketAddr::from(([127, 0, 0, 1], 0))).map(drop))
        .join()
        .map_err(|_| NO_ANSWER.to_owned())?
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_through_its_own_namespace_and_names_a_missing_one() {
        if let Err(why) = available() {
            eprintln!("skipping: cannot enter network namespaces here: {why}");
            return;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conn = connect("/proc/self/ns/net", addr, Duration::from_secs(2)).await.unwrap();
        assert_eq!(conn.peer_addr().unwrap(), addr);
        let err = connect("/nonexistent/ns", addr, Duration::from_secs(2)).await.unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ns"), "{err}");
    }
}
