//! The audit log: every command that changes state records who did what, from where.
//!
//! Writes go through `record`, inside the same transaction as the change where there is one, so
//! the log never claims a change that was rolled back.

use mysql::prelude::Queryable;
use serde::Serialize;
use serde_json::Value;

use crate::db::Db;
use crate::error::Result;

/// The operator column's width: a longer name is cut to fit, never refused by the server.
const OPERATOR_MAX: usize = 255;

/// Who is acting: `$SHARDCTL_OPERATOR`, else the sudoing user (`$SUDO_USER`), else `$USER`,
/// else `$LOGNAME`, else the login name of the process's uid (cron sets none of the variables),
/// else `uid:N`. Cut to the column's width. Control characters are refused earlier, by
/// `check_operator`, when the command loads its configuration.
pub fn operator() -> String {
    static OPERATOR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OPERATOR
        .get_or_init(|| operator_from(|v| std::env::var(v).ok(), uid_login))
        .clone()
}

/// Refuses an operator name with control characters (a newline would forge audit lines in
/// whatever reads the log as text).
pub fn check_operator() -> std::result::Result<(), String> {
    // A set variable that is not UTF-8 would be skipped by the rule below and the next one
    // used: the audit would name someone else.
    for var in ["SHARDCTL_OPERATOR", "SUDO_USER", "USER", "LOGNAME"] {
        match std::env::var(var) {
            Err(std::env::VarError::NotUnicode(v)) => {
                return Err(format!(
                    "${var} ({:?}) is not UTF-8: set it to the operator's name",
                    v.to_string_lossy()
                ))
            }
            Ok(v) if !v.is_empty() => break,
            _ => {}
        }
    }
    let name = operator();
    if name.chars().any(crate::types::is_hidden_char) {
        return Err(format!(
            "the operator name {:?} (from $SHARDCTL_OPERATOR, $SUDO_USER, $USER or $LOGNAME) contains control or format characters",
            name.chars().take(40).collect::<String>()
        ));
    }
    Ok(())
}

/// The operator rule, over the environment and the uid's login name as given.
fn operator_from(
    var: impl Fn(&str) -> Option<String>,
    login: impl Fn() -> Option<String>,
) -> String {
    let name = ["SHARDCTL_OPERATOR", "SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| var(v).filter(|s| !s.is_empty()))
        .or_else(login)
        // SAFETY: getuid cannot fail.
        .unwrap_or_else(|| format!("uid:{}", unsafe { libc::getuid() }));
    name.chars().take(OPERATOR_MAX).collect()
}

/// The login name of the process's real uid, from the password database.
fn uid_login() -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: a zeroed passwd is a valid out-parameter; getpwuid_r writes strings into `buf`
    // (valid for its length) and sets `found` to `pwd` on success or null otherwise.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(pwd.pw_name)
            .to_string_lossy()
            .into_owned();
        (!name.is_empty()).then_some(name)
    }
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
    // The database login beside the operator: what the server let do the work.
    conn.exec_drop(
        "INSERT INTO audit_log (at, operator, host, db_login, action, target, details)
         VALUES (UTC_TIMESTAMP(6), ?, ?, CURRENT_USER(), ?, ?, ?)",
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
            "INSERT INTO audit_log (at, operator, host, db_login, action, target, details) VALUES {}",
            vec!["(UTC_TIMESTAMP(6), ?, ?, CURRENT_USER(), ?, ?, ?)"; entries.len()].join(", ")
        ),
        params,
    )
}

#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub id: u64,
    pub at: String,
    pub operator: String,
    pub host: String,
    /// The database login that made the change.
    pub db_login: Option<String>,
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
    type Row = (
        u64,
        String,
        String,
        String,
        Option<String>,
        String,
        String,
        String,
    );
    let rows: Vec<Row> = db.exec(
        "reading the audit log",
        "SELECT audit_id, DATE_FORMAT(at, '%Y-%m-%dT%H:%i:%s.%fZ'), operator, host, db_login, action, target, details
         FROM audit_log
         WHERE (? IS NULL OR at >= UTC_TIMESTAMP(6) - INTERVAL ? SECOND)
           AND (? IS NULL OR action = ?)
         ORDER BY audit_id DESC LIMIT ?",
        (since_secs, since_secs, action, action, limit),
    )?;
    Ok(rows
        .into_iter()
        .map(
            |(id, at, operator, host, db_login, action, target, details)| Entry {
                id,
                at,
                operator,
                host,
                db_login,
                action,
                target,
                details: serde_json::from_str(&details).unwrap_or(Value::String(details)),
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_falls_back_to_the_uid_login_and_fits_the_column() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |v: &str| {
                vars.iter()
                    .find(|(k, _)| *k == v)
                    .map(|(_, x)| x.to_string())
            }
        };
        let login = || Some("cronuser".to_string());
        assert_eq!(operator_from(env(&[]), login), "cronuser");
        assert_eq!(
            operator_from(env(&[("USER", ""), ("LOGNAME", "ln")]), login),
            "ln"
        );
        assert_eq!(
            operator_from(env(&[("SUDO_USER", "alice"), ("USER", "root")]), login),
            "alice"
        );
        assert!(operator_from(env(&[]), || None).starts_with("uid:"));
        let long: &'static str = Box::leak("x".repeat(300).into_boxed_str());
        let vars: &'static [(&'static str, &'static str)] =
            Box::leak(vec![("SHARDCTL_OPERATOR", long)].into_boxed_slice());
        assert_eq!(operator_from(env(vars), login).chars().count(), 255);
    }
}
