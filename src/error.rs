//! Typed errors: the library says what went wrong, the edge maps it to an exit code.

use std::sync::Arc;

use crate::exit_codes;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The command line asked for something malformed (a bad value, a bad file).
    #[error("{0}")]
    Usage(String),
    /// The configuration is missing, malformed, or its credentials are refused.
    #[error("{0}")]
    Config(String),
    /// A user, shard, lock or migration that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A conflicting state: a duplicate name, a non-empty shard.
    #[error("{0}")]
    Conflict(String),
    /// A server could not be reached.
    #[error("{0}")]
    Unreachable(String),
    /// A server answered with an error (its MySQL code kept), or its data is inconsistent.
    #[error("{0}")]
    Database(DbError),
    /// The lock is held by someone else.
    #[error("{0}")]
    LockInUse(String),
    /// A lock this process held was lost (expired, taken over, force-released).
    #[error("{0}")]
    LockLost(String),
    /// A safety check refused the operation; nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// Anything else that failed: a local file, a process, a server that would not start.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Config(_) => exit_codes::USAGE,
            Error::Database(e) if e.is_configuration() => exit_codes::USAGE,
            Error::Refused(_) => exit_codes::REFUSED,
            Error::LockInUse(_) => exit_codes::LOCK_IN_USE,
            Error::NotFound(_)
            | Error::Conflict(_)
            | Error::Unreachable(_)
            | Error::Database(_)
            | Error::LockLost(_)
            | Error::Failed(_) => exit_codes::FAILED,
        }
    }

    /// The stable `kind` of the JSON error object.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::Config(_) => "config",
            Error::Database(e) if e.is_configuration() => "config",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Unreachable(_) => "unreachable",
            Error::Database(_) => "database",
            Error::Refused(_) => "refused",
            Error::LockInUse(_) => "lock_in_use",
            Error::LockLost(_) => "lock_lost",
            Error::Failed(_) => "failed",
        }
    }

    /// An error from the `mysql` crate, with the server and what we were doing.
    ///
    /// A server's answer keeps its code (access denied and unknown database are configuration
    /// problems, exit 2); I/O, protocol and TLS failures mean the server is unreachable (exit 1).
    /// Messages are the server's text or plain words, never the driver's Debug text.
    pub fn db(server: &str, doing: &str, err: mysql::Error) -> Error {
        if let Some(io) = io_error(&err) {
            // A read or write that ran out of its timeout: the server did not answer in time
            // (frozen, overloaded, partitioned) — said plainly, not as the driver's Debug text.
            let what = match io.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    "no answer within the timeout".to_string()
                }
                _ => one_line(&io.to_string()),
            };
            return Error::Unreachable(format!("{doing} on {server}: {what}"));
        }
        match err {
            mysql::Error::MySqlError(e) if e.code == crate::ring::fences::FENCED => {
                Error::LockLost(format!("{doing}: {}", e.message))
            }
            mysql::Error::MySqlError(e) => Error::Database(DbError {
                code: Some(e.code),
                message: format!(
                    "{doing} on {server}: ERROR {} ({}): {}",
                    e.code,
                    e.state,
                    one_line(&e.message)
                )
                .into(),
            }),
            mysql::Error::DriverError(e) => {
                Error::Unreachable(format!("{doing} on {server}: {}", one_line(&e.to_string())))
            }
            mysql::Error::TlsError(e) => Error::Unreachable(format!(
                "{doing} on {server}: TLS: {}",
                one_line(&e.to_string())
            )),
            mysql::Error::UrlError(e) => Error::Config(format!("{doing} on {server}: {e}")),
            mysql::Error::FromValueError(v) => Error::Database(DbError::inconsistent(format!(
                "{doing} on {server}: the server returned a value of an unexpected type ({})",
                excerpt(&format!("{v:?}"), 80)
            ))),
            mysql::Error::FromRowError(_) => Error::Database(DbError::inconsistent(format!(
                "{doing} on {server}: the server returned a row of an unexpected shape"
            ))),
            mysql::Error::CodecError(e) => Error::Unreachable(format!(
                "{doing} on {server}: the connection broke: {}",
                one_line(&e.to_string())
            )),
            mysql::Error::IoError(e) => {
                Error::Unreachable(format!("{doing} on {server}: {}", one_line(&e.to_string())))
            }
        }
    }

    /// Data that contradicts itself (a journal entry missing, a state no version wrote).
    pub fn inconsistent(message: impl Into<String>) -> Error {
        Error::Database(DbError::inconsistent(message))
    }

    /// The server's error, if a server answered with one.
    pub fn server_error(&self) -> Option<&DbError> {
        match self {
            Error::Database(e) if e.code.is_some() => Some(e),
            _ => None,
        }
    }

    /// Whether a server answered with this kind of error.
    pub fn is(&self, kind: DbErrorKind) -> bool {
        self.server_error().is_some_and(|e| e.kind() == kind)
    }

    /// A local I/O failure with what we were doing.
    pub fn io(doing: &str, err: std::io::Error) -> Error {
        Error::Failed(format!("{doing}: {err}"))
    }
}

/// What a server's error code means to shardctl: the branches it takes on them, and nothing
/// else (a message's text is for people, never searched).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbErrorKind {
    /// 1213: InnoDB chose this transaction as a deadlock victim and rolled it back whole.
    Deadlock,
    /// 1062: a duplicate key.
    Duplicate,
    /// 1094: `KILL` of a session that has already ended.
    UnknownThread,
    /// 1049: the database does not exist.
    UnknownDatabase,
    /// 1044, 1045, 1698: the login or its privileges are refused.
    AccessDenied,
    /// 1148, 3948, 3950, 4166: the server (or its settings) refuses `LOAD DATA LOCAL`.
    LocalInfileRefused,
    /// 1054: a column the statement names does not exist.
    UnknownColumn,
    /// 1146: a table the statement names does not exist.
    UnknownTable,
    /// 1048: NULL where the column refuses it (a fused `GET_LOCK` that was not granted).
    NullRefused,
    /// 1205: a row lock was not granted within `innodb_lock_wait_timeout`; 1969: a statement
    /// shardctl bounded with `max_statement_time` ran out waiting.
    LockWaitTimeout,
    /// Any other server error, or inconsistent data (no code).
    Other,
}

impl DbErrorKind {
    /// The one mapping from MySQL error codes to what shardctl branches on.
    pub fn of(code: Option<u16>) -> DbErrorKind {
        match code {
            Some(1213) => DbErrorKind::Deadlock,
            Some(1062) => DbErrorKind::Duplicate,
            Some(1094) => DbErrorKind::UnknownThread,
            Some(1049) => DbErrorKind::UnknownDatabase,
            Some(1044 | 1045 | 1698) => DbErrorKind::AccessDenied,
            Some(1148 | 3948 | 3950 | 4166) => DbErrorKind::LocalInfileRefused,
            Some(1054) => DbErrorKind::UnknownColumn,
            Some(1146) => DbErrorKind::UnknownTable,
            Some(1048) => DbErrorKind::NullRefused,
            Some(1205 | 1969) => DbErrorKind::LockWaitTimeout,
            _ => DbErrorKind::Other,
        }
    }
}

/// An error a server answered with, its code kept: the shape of sqlx's `DatabaseError`.
/// Cheap to clone (the message is shared).
#[derive(Clone, Debug)]
pub struct DbError {
    code: Option<u16>,
    message: Arc<str>,
}

impl DbError {
    /// An error no server code explains: the data contradicts itself.
    pub fn inconsistent(message: impl Into<String>) -> DbError {
        DbError {
            code: None,
            message: message.into().into(),
        }
    }

    /// A server's error as shardctl reports it: `message` is the whole line for people.
    pub fn server(code: u16, message: impl Into<String>) -> DbError {
        DbError {
            code: Some(code),
            message: message.into().into(),
        }
    }

    /// The MySQL error code, when a server answered.
    pub fn code(&self) -> Option<u16> {
        self.code
    }

    pub fn kind(&self) -> DbErrorKind {
        DbErrorKind::of(self.code)
    }

    pub fn is_deadlock(&self) -> bool {
        self.kind() == DbErrorKind::Deadlock
    }

    pub fn is_duplicate(&self) -> bool {
        self.kind() == DbErrorKind::Duplicate
    }

    /// A login refused or a database missing: the configuration is wrong (exit 2).
    pub fn is_configuration(&self) -> bool {
        matches!(
            self.kind(),
            DbErrorKind::AccessDenied | DbErrorKind::UnknownDatabase
        )
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Server messages may span lines; an error is one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` characters of `text` (input quoted back in a message), marked when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().nth(max).is_some() {
        out.push_str("...");
    }
    out
}

/// The I/O error under a driver error, where there is one: the connection itself failed (the
/// driver reports a read timeout as a codec error wrapping it).
pub fn io_error(err: &mysql::Error) -> Option<&std::io::Error> {
    // The crate's re-export of mysql_common (field notes: never a direct dependency).
    use mysql::mysql_common::proto::codec::error::PacketCodecError;
    match err {
        mysql::Error::IoError(e) => Some(e),
        mysql::Error::CodecError(PacketCodecError::Io(e)) => Some(e),
        _ => None,
    }
}

/// What a driver error inside a transaction is, by its server code (`Other` if no server
/// answered with one).
pub fn kind_of(err: &mysql::Error) -> DbErrorKind {
    DbErrorKind::of(match err {
        mysql::Error::MySqlError(e) => Some(e.code),
        _ => None,
    })
}
