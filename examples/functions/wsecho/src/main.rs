//! wsecho: a WebSocket echo function, thread per connection.
//!
//! Environment:
//! - `PORT` (default 8080) and `HOST` (default 0.0.0.0; the process runtime sets 127.0.0.1);
//! - `PILOTLIGHT_FUNCTION`: its name (default `wsecho`);
//! - `ECHO_PREFIX`: put in front of every echoed message (default empty), so a
//!   test can tell which generation of a function answers.
//!
//! Routes:
//! - a WebSocket upgrade on any path → every text or binary message comes back
//!   with the prefix; a close is answered and ends the connection;
//! - any other request → 200 `wsecho <name>` (readiness probes land here).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::{Error, Message};

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".into());
    let name = std::env::var("PILOTLIGHT_FUNCTION").unwrap_or_else(|_| "wsecho".into());
    let prefix: &'static str = Box::leak(std::env::var("ECHO_PREFIX").unwrap_or_default().into_boxed_str());
    let listener = match TcpListener::bind(format!("{host}:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wsecho: cannot listen on {host}:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("wsecho ({name}) listening on {host}:{port}");
    let banner: &'static str = Box::leak(format!("wsecho {name}\n").into_boxed_str());
    for conn in listener.incoming() {
        match conn {
            Ok(conn) => {
                std::thread::spawn(move || {
                    if let Err(e) = serve(conn, banner, prefix) {
                        eprintln!("wsecho: connection ended: {e}");
                    }
                });
            }
            Err(e) => eprintln!("wsecho: accept failed: {e}"),
        }
    }
}

/// The head of one request: whether it asks for a WebSocket, and its key.
struct Head {
    websocket: bool,
    key: Option<String>,
    close: bool,
}

fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Head>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut head = Head { websocket: false, key: None, close: line.trim_end().ends_with("HTTP/1.0") };
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Ok(Some(head));
        }
        if let Some((k, v)) = header.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "upgrade" => head.websocket = v.eq_ignore_ascii_case("websocket"),
                "sec-websocket-key" => head.key = Some(v.to_owned()),
                "connection" if v.eq_ignore_ascii_case("close") => head.close = true,
                _ => {}
            }
        }
    }
}

fn serve(conn: TcpStream, banner: &str, prefix: &str) -> Result<(), Error> {
    conn.set_nodelay(true)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let Some(head) = read_head(&mut reader)? else { return Ok(()) };
        match (head.websocket, head.key) {
            (true, Some(key)) => {
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
                    derive_accept_key(key.as_bytes())
                );
                out.write_all(answer.as_bytes())?;
                out.flush()?;
                // The client speaks only after our 101, so nothing is left in the reader's buffer.
                return echo(WebSocket::from_raw_socket(out, Role::Server, None), prefix);
            }
            (true, None) => {
                let body = "a WebSocket upgrade needs Sec-WebSocket-Key\n";
                write!(
                    out,
                    "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )?;
                return Ok(());
            }
            (false, _) => {
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{banner}",
                    banner.len(),
                    if head.close { "connection: close\r\n" } else { "" }
                )?;
                out.flush()?;
                if head.close {
                    return Ok(());
                }
            }
        }
    }
}

fn echo(mut ws: WebSocket<TcpStream>, prefix: &str) -> Result<(), Error> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => ws.send(Message::text(format!("{prefix}{}", t.as_str())))?,
            Ok(Message::Binary(b)) => {
                let mut v = prefix.as_bytes().to_vec();
                v.extend_from_slice(&b);
                ws.send(Message::binary(v))?;
            }
            Ok(_) => {}
            Err(Error::ConnectionClosed | Error::AlreadyClosed) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}
