//! The audit log: every command that changes state records who did what, from where.
//!
//! Writes go through `record`, inside the same transaction as the change where there is one, so
//! the log never claims a change that was rolled back.

use mysql::prelude::Queryable;
use serde::Serialize;
use serde_json::Value;

use crate::db::Db;
use crate::error::Result;

/// Who is acting: `$SHARDCTL_OPERATOR`, else the sudoing user, else the login name.
pub fn operator() -> String {
    ["SHARDCTL_OPERATOR", "SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// This machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and we stop at the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Writes one audit entry on `conn` (a connection or an open transaction).
pub fn record(
    conn: &mut impl Queryable,
    action: &str,
    target: &str,
    details: Value,
) -> mysql::Result<()> {
    conn.exec_drop(
        "INSERT INTO audit_log (at, operator, host, action, target, details)
         VALUES (UTC_TIMESTAMP(6), ?, ?, ?, ?, ?)",
        (operator(), hostname(), action, target, details.to_string()),
    )
}

/// Writes one audit entry per (target, details), in one statement.
pub fn record_many(
    conn: &mut impl Queryable,
    action: &str,
    entries: &[(String, Value)],
) -> mysql::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let (operator, host) = (operator(), hostname());
    let mut params: Vec<mysql::Value> = Vec::with_capacity(entries.len() * 5);
    for (target, details) in entries {
        params.extend([
            operator.as_str().into(),
            host.as_str().into(),
            action.into(),
            target.as_str().into(),
            details.to_string().into(),
        ]);
    }
    conn.exec_drop(
        format!(
            "INSERT INTO audit_log (at, operator, host, action, target, details) VALUES {}",
            vec!["(UTC_TIMESTAMP(6), ?, ?, ?, ?, ?)"; entries.len()].join(", ")
        ),
        params,
    )
}

#[derive(Debug, Serialize)]
pub struct Entry {
    pub id: u64,
    pub at: String,
    pub operator: String,
    pub host: String,
    pub action: String,
    pub target: String,
    pub details: Value,
}

/// Entries newest first, optionally since `since_secs` ago and for one action.
pub fn read(
    db: &mut Db,
    since_secs: Option<u64>,
    action: Option<&str>,
    limit: u64,
) -> Result<Vec<Entry>> {
    let rows: Vec<(u64, String, String, String, String, String, String)> = db.exec(
        "reading the audit log",
        "SELECT audit_id, DATE_FORMAT(at, '%Y-%m-%dT%H:%i:%s.%fZ'), operator, host, action, target, details
         FROM audit_log
         WHERE (? IS NULL OR at >= UTC_TIMESTAMP(6) - INTERVAL ? SECOND)
           AND (? IS NULL OR action = ?)
         ORDER BY audit_id DESC LIMIT ?",
        (since_secs, since_secs, action, action, limit),
    )?;
    Ok(rows
        .into_iter()
        .map(|(id, at, operator, host, action, target, details)| Entry {
            id,
            at,
            operator,
            host,
            action,
            target,
            details: serde_json::from_str(&details).unwrap_or(Value::String(details)),
        })
        .collect())
}
