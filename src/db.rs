//! Connections to MySQL servers: timeouts, TLS, and errors that name the server and what we were
//! doing. A connection that saw an I/O or protocol error is dropped, never reused: the `mysql`
//! crate may hand back a previous query's result after a read timeout.

use std::net::TcpStream;
use std::time::Duration;

use mysql::prelude::{FromRow, Queryable};
use mysql::{Conn, Opts, OptsBuilder, Params, SslOpts, Transaction, TxOpts};

use crate::config::{Login, NetOptions, TlsMode};
use crate::error::{DbErrorKind, Error, Result};
use crate::types::{HostPort, Ident};

/// One server connection, labelled with the server's address for error messages.
pub struct Db {
    conn: Option<Conn>,
    pub server: HostPort,
}

fn opts(
    addr: &HostPort,
    login: &Login,
    database: Option<&Ident>,
    net: &NetOptions,
    tls: bool,
) -> Opts {
    let mut b = OptsBuilder::new()
        .ip_or_hostname(Some(addr.host.clone()))
        .tcp_port(addr.port)
        .user(Some(login.user.clone()))
        .pass(login.password.as_ref().map(|p| p.expose().to_string()))
        .db_name(database.map(|d| d.as_str().to_string()))
        .prefer_socket(false)
        .tcp_connect_timeout(Some(net.connect_timeout))
        .read_timeout(Some(net.read_timeout))
        .write_timeout(Some(net.write_timeout))
        .stmt_cache_size(Some(64));
    if tls {
        let mut ssl = SslOpts::default().with_root_cert_path(net.ca.clone());
        match net.tls {
            // Encrypted but unverified, like the client's --ssl-mode=REQUIRED.
            TlsMode::Preferred | TlsMode::Required => {
                ssl = ssl.with_danger_accept_invalid_certs(true)
            }
            TlsMode::VerifyIdentity | TlsMode::Disabled => {}
        }
        b = b.ssl_opts(Some(ssl));
    }
    b.into()
}

/// True for errors after which the connection's state is unknown.
fn is_broken(err: &mysql::Error) -> bool {
    crate::error::io_error(err).is_some()
        || matches!(
            err,
            mysql::Error::DriverError(_) | mysql::Error::TlsError(_) | mysql::Error::CodecError(_)
        )
}

impl Db {
    /// Connects, optionally selecting a database.
    pub fn connect(
        addr: &HostPort,
        login: &Login,
        database: Option<&Ident>,
        net: &NetOptions,
    ) -> Result<Db> {
        // The handshake is a read like any other: bounded by the connect timeout, so a server
        // that accepts TCP but never greets (SIGSTOP, a hung mysqld) costs at most that long.
        let handshake = NetOptions {
            read_timeout: net.connect_timeout,
            write_timeout: net.connect_timeout,
            ..net.clone()
        };
        let attempt = |tls| Conn::new(opts(addr, login, database, &handshake, tls));
        let conn = match net.tls {
            TlsMode::Disabled => attempt(false),
            TlsMode::Required | TlsMode::VerifyIdentity => attempt(true),
            TlsMode::Preferred => attempt(true).or_else(|_| attempt(false)),
        }
        .map_err(|e| Error::db(&addr.to_string(), "connecting", e))?;
        let mut db = Db {
            conn: Some(conn),
            server: addr.clone(),
        };
        db.set_timeouts(net.read_timeout, net.write_timeout)?;
        Ok(db)
    }

    /// Sets how long one read or write on this connection may block. Waits bounded by what
    /// the operator asked (a drain's `--timeout`) lower it so a frozen server cannot hold them.
    pub fn set_timeouts(&mut self, read: Duration, write: Duration) -> Result<()> {
        use std::os::unix::io::{AsRawFd, FromRawFd};
        let Some(conn) = self.conn.as_ref() else {
            return Ok(());
        };
        // SAFETY: the descriptor belongs to `conn`, which outlives this borrow; ManuallyDrop
        // keeps the temporary TcpStream from closing it.
        let socket =
            std::mem::ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(conn.as_raw_fd()) });
        let zero_is_none = |d: Duration| (!d.is_zero()).then_some(d);
        socket
            .set_read_timeout(zero_is_none(read))
            .and_then(|()| socket.set_write_timeout(zero_is_none(write)))
            .map_err(|e| Error::Failed(format!("setting timeouts on {}: {e}", self.server)))
    }

    /// Runs `f` on the connection; on an I/O error the connection is dropped for good.
    pub fn run<T>(
        &mut self,
        doing: &str,
        f: impl FnOnce(&mut Conn) -> mysql::Result<T>,
    ) -> Result<T> {
        let server = self.server.to_string();
        let conn = self.conn.as_mut().ok_or_else(|| {
            Error::Unreachable(format!(
                "{doing} on {server}: the connection was lost earlier"
            ))
        })?;
        f(conn).map_err(|e| {
            if is_broken(&e) {
                self.conn = None;
            }
            Error::db(&server, doing, e)
        })
    }

    /// The connection, given away (a binary log stream consumes it).
    pub fn into_conn(mut self, doing: &str) -> Result<Conn> {
        self.raw(doing)?;
        Ok(self.conn.take().expect("checked above"))
    }

    /// The connection itself, for streaming reads that outlive one call. A stream that fails
    /// must drop this `Db`: its state is unknown.
    pub fn raw(&mut self, doing: &str) -> Result<&mut Conn> {
        let server = self.server.to_string();
        self.conn.as_mut().ok_or_else(|| {
            Error::Unreachable(format!(
                "{doing} on {server}: the connection was lost earlier"
            ))
        })
    }

    pub fn query_drop(&mut self, doing: &str, sql: &str) -> Result<()> {
        self.run(doing, |c| c.query_drop(sql))
    }

    pub fn exec_drop(&mut self, doing: &str, sql: &str, params: impl Into<Params>) -> Result<()> {
        self.run(doing, |c| c.exec_drop(sql, params))
    }

    pub fn exec<T: FromRow>(
        &mut self,
        doing: &str,
        sql: &str,
        params: impl Into<Params>,
    ) -> Result<Vec<T>> {
        self.run(doing, |c| c.exec(sql, params))
    }

    pub fn exec_first<T: FromRow>(
        &mut self,
        doing: &str,
        sql: &str,
        params: impl Into<Params>,
    ) -> Result<Option<T>> {
        self.run(doing, |c| c.exec_first(sql, params))
    }

    /// Runs `f` in one transaction: committed if it returns Ok, rolled back otherwise.
    pub fn transaction<T>(
        &mut self,
        doing: &str,
        f: impl FnOnce(&mut Transaction) -> mysql::Result<T>,
    ) -> Result<T> {
        self.run(doing, |c| {
            let mut tx = c.start_transaction(TxOpts::default())?;
            let v = f(&mut tx)?;
            tx.commit()?;
            Ok(v)
        })
    }

    /// Runs `f` in one transaction, committed only if it returns `Some`: `None` says the data
    /// was not as expected, and whatever `f` changed before noticing is rolled back.
    pub fn transaction_if<T>(
        &mut self,
        doing: &str,
        f: impl FnOnce(&mut Transaction) -> mysql::Result<Option<T>>,
    ) -> Result<Option<T>> {
        self.run(doing, |c| {
            let mut tx = c.start_transaction(TxOpts::default())?;
            let v = f(&mut tx)?;
            match v {
                Some(_) => tx.commit()?,
                None => tx.rollback()?,
            }
            Ok(v)
        })
    }

    /// Closes the connection: its state is unknown, and it must not be used again.
    pub fn mark_lost(&mut self) {
        self.conn = None;
    }

    /// Whether an I/O error ended this connection (it is never used again).
    pub fn is_lost(&self) -> bool {
        self.conn.is_none()
    }

    /// This session's connection id, from the handshake (no round trip).
    pub fn connection_id(&self) -> u64 {
        self.conn
            .as_ref()
            .map(|c| c.connection_id() as u64)
            .unwrap_or(0)
    }

    /// Ends session `id` on this server (`KILL CONNECTION`); false if it had already ended.
    pub fn kill_connection(&mut self, doing: &str, id: u64) -> Result<bool> {
        match self.query_drop(doing, &format!("KILL CONNECTION {id}")) {
            Ok(()) => Ok(true),
            Err(e) if e.is(DbErrorKind::UnknownThread) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The server's version string.
    pub fn version(&mut self) -> Result<String> {
        Ok(self
            .exec_first::<String>("reading the version", "SELECT VERSION()", ())?
            .unwrap_or_default())
    }
}

/// Runs a statement or transaction again when InnoDB chose it as a deadlock victim (it was
/// rolled back whole, so running it again is safe). Concurrent workers inserting and deleting
/// neighbouring keys of one table meet this now and then.
pub fn retry_deadlocks<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let mut attempt = 0;
    loop {
        match f() {
            Err(e) if e.is(DbErrorKind::Deadlock) && attempt < 6 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(5 << attempt));
            }
            other => return other,
        }
    }
}

/// `n` placeholders `(?, ?, ...)` repeated for `rows` rows, for multi-row statements.
pub fn row_placeholders(rows: usize, cols: usize) -> String {
    let one = format!("({})", vec!["?"; cols].join(","));
    vec![one; rows].join(",")
}

/// `?, ?, ...` for `n` values.
pub fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Values for a statement's placeholders.
pub fn values<T: Into<mysql::Value> + Copy>(items: &[T]) -> Vec<mysql::Value> {
    items.iter().map(|&v| v.into()).collect()
}
