//! The two memcached commands shardctl sends, in the ASCII protocol: `delete` (pipelined, every
//! key in one write, the answers read back in order) and `version` (is it there). Each call
//! opens its own connection, bounded by `timeout` end to end, so a frozen cache server costs at
//! most that.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::types::HostPort;

fn connect(server: &HostPort, timeout: Duration) -> Result<TcpStream, String> {
    let addr = (server.host.as_str(), server.port)
        .to_socket_addrs()
        .map_err(|e| format!("{server}: {e}"))?
        .next()
        .ok_or_else(|| format!("{server}: no address"))?;
    let stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{server}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("{server}: {e}"))?;
    Ok(stream)
}

/// Deletes `keys` on `server`: Ok once it has answered for every key (deleted, or not there).
pub fn delete(server: &HostPort, keys: &[String], timeout: Duration) -> Result<(), String> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut stream = connect(server, timeout)?;
    let mut out = Vec::with_capacity(keys.len() * 32);
    for k in keys {
        out.extend_from_slice(b"delete ");
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    stream
        .write_all(&out)
        .map_err(|e| format!("{server}: {e}"))?;
    let mut answers = BufReader::new(stream);
    let mut line = String::new();
    for k in keys {
        line.clear();
        answers
            .read_line(&mut line)
            .map_err(|e| format!("{server}: {e}"))?;
        match line.trim_end() {
            "DELETED" | "NOT_FOUND" => {}
            "" => return Err(format!("{server}: the connection closed")),
            other => return Err(format!("{server}: delete {k}: {other}")),
        }
    }
    Ok(())
}

/// The server's version: it answers.
pub fn version(server: &HostPort, timeout: Duration) -> Result<String, String> {
    let mut stream = connect(server, timeout)?;
    stream
        .write_all(b"version\r\n")
        .map_err(|e| format!("{server}: {e}"))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("{server}: {e}"))?;
    line.trim_end()
        .strip_prefix("VERSION ")
        .map(str::to_string)
        .ok_or_else(|| format!("{server}: answered `{}`", line.trim_end()))
}
