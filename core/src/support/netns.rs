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

/// Creates a TCP socket for `addr`'s family inside the namespace at `netns`,
/// on a thread of its own that ends right after; `done` gets the result.
fn socket_in(netns: &str, addr: SocketAddr, done: impl FnOnce(io::Result<TcpSocket>) + Send + 'static) {
    let ns = match File::open(netns) {
        Ok(f) => f,
        Err(e) => return done(Err(io::Error::new(e.kind(), format!("cannot open network namespace {netns}: {e}")))),
    };
    let name = netns.to_owned();
    let done = std::sync::Arc::new(parking_lot::Mutex::new(Some(done)));
    let on_thread = std::sync::Arc::clone(&done);
    let spawned = std::thread::Builder::new().name("pilotlight-netns".into()).spawn(move || {
        let made = setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| {
                io::Error::new(io::ErrorKind::PermissionDenied, format!("cannot enter network namespace {name}: {e}"))
            })
            .and_then(|()| if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() });
        if let Some(done) = on_thread.lock().take() {
            done(made);
        }
    });
    if let Err(e) = spawned
        && let Some(done) = done.lock().take()
    {
        done(Err(io::Error::other(format!("cannot start a thread to enter a network namespace: {e}"))));
    }
}

/// Connects to `addr` inside the network namespace at `netns` (a path such as
/// `/proc/<pid>/ns/net` or `/var/run/docker/netns/<id>`), with `TCP_NODELAY`.
pub async fn connect(netns: &str, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    socket_in(netns, addr, move |made| {
        let _ = tx.send(made);
    });
    let socket = rx.await.map_err(|_| io::Error::other("the namespace thread ended without an answer"))??;
    let stream = tokio::time::timeout(timeout, socket.connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr} in {netns} timed out")))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Whether this process may enter network namespaces: it tries its own,
/// which changes nothing but needs the same capability as any other.
pub fn available() -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    socket_in("/proc/self/ns/net", SocketAddr::from(([127, 0, 0, 1], 0)), move |made| {
        let _ = tx.send(made.map(drop));
    });
    match rx.recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the namespace thread ended without an answer".into()),
    }
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
