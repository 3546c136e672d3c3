//! Typed errors: the library says what went wrong, the edge maps it to an exit code.

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
    /// A server answered with an error.
    #[error("{0}")]
    Database(String),
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
    /// Access denied and unknown database are configuration problems (exit 2); I/O and
    /// connect failures mean the server is unreachable (exit 1).
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
        let text = format!("{doing} on {server}: {}", one_line(&err.to_string()));
        match &err {
            mysql::Error::MySqlError(e) if matches!(e.code, 1044 | 1045 | 1049 | 1698) => {
                Error::Config(text)
            }
            mysql::Error::DriverError(_) | mysql::Error::TlsError(_) => Error::Unreachable(text),
            _ => Error::Database(text),
        }
    }

    /// A local I/O failure with what we were doing.
    pub fn io(doing: &str, err: std::io::Error) -> Error {
        Error::Failed(format!("{doing}: {err}"))
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

/// The MySQL error code of a server error, if it is one.
pub fn mysql_code(err: &mysql::Error) -> Option<u16> {
    match err {
        mysql::Error::MySqlError(e) => Some(e.code),
        _ => None,
    }
}
