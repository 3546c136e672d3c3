//! Values parsed at the edge: anything past the argument parser is already valid.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A server address, `host:port` (IPv6 as `[::1]:3306`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    pub fn new(host: impl Into<String>, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<HostPort, String> {
        let bad = || format!("`{s}` is not HOST:PORT (for example 10.0.0.5:3306)");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
            (host, port)
        } else {
            s.rsplit_once(':').ok_or_else(bad)?
        };
        let host_ok = !host.is_empty()
            && host.len() <= 255
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
        if !host_ok {
            return Err(bad());
        }
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(bad());
        }
        Ok(HostPort::new(host, port))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Checks a name against a character set and a length limit; the message names the rule.
fn check_name(kind: &str, s: &str, max: usize, extra: &[char]) -> Result<(), String> {
    let allowed = extra.iter().collect::<String>();
    if s.is_empty() || s.len() > max {
        return Err(format!("{kind} `{s}` must be 1 to {max} characters long"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
    {
        return Err(format!(
            "{kind} `{s}` may only contain letters, digits and `{allowed}`"
        ));
    }
    Ok(())
}

/// Whether `c` changes how text around it is shown without being seen itself: controls (ESC,
/// newline, BEL), the line and paragraph separators, and Unicode's format characters (bidi
/// overrides and isolates, zero-width characters, the byte-order mark, tags).
pub fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0xAD | 0x2028 | 0x2029 | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
            | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
            | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// Free text an operator gives (an owner, a purpose, a reason): printed later in tables and
/// audit lines, so nothing in it may move the cursor, forge a line or reorder what is shown.
pub fn plain_text(what: &str, s: &str, max: usize) -> Result<String, String> {
    if let Some(c) = s.chars().find(|&c| is_hidden_char(c)) {
        return Err(format!(
            "{what} contains {:?} (U+{:04X}): control and format characters are not allowed",
            c, c as u32
        ));
    }
    if s.chars().count() > max {
        return Err(format!("{what} is longer than {max} characters"));
    }
    Ok(s.to_string())
}

/// Stored text for printing: hidden characters shown escaped (`\u{1b}`), newlines too, so a
/// record written by anyone cannot move the cursor or forge a line or a table row.
pub fn shown(s: &str) -> String {
    escaped(s, |_| true)
}

/// A table cell: hidden characters escaped except newlines, which a cell of our own may hold
/// on purpose (a shard's servers, one per line); stored text goes through `shown` first.
pub fn shown_cell(s: &str) -> String {
    escaped(s, |c| c != '\n')
}

fn escaped(s: &str, escape: impl Fn(char) -> bool) -> String {
    let hidden = |c: char| is_hidden_char(c) && escape(c);
    if !s.chars().any(hidden) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if hidden(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A shard name: `[A-Za-z0-9_.-]`, at most 64 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardName(String);

impl ShardName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ShardName {
    type Err = String;
    fn from_str(s: &str) -> Result<ShardName, String> {
        check_name("shard name", s, 64, &['_', '.', '-'])?;
        Ok(ShardName(s.to_string()))
    }
}

/// Read as the text it is (checked once, when parsed).
impl std::ops::Deref for ShardName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ShardName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ShardName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for ShardName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ShardName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A lock name: `[A-Za-z0-9_.:-]`, at most 64 characters (MySQL's GET_LOCK limit).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockName(String);

impl LockName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user of an account lock, `ACCOUNT_<uid>_<TASK>`; None for any other name.
    pub fn account(&self) -> Option<u64> {
        let rest = self.0.strip_prefix("ACCOUNT_")?;
        let (uid, task) = rest.split_once('_')?;
        if task.is_empty() {
            return None;
        }
        uid.parse().ok()
    }

    /// The account lock for `user` and `task`.
    pub fn for_account(user: u64, task: &str) -> Result<LockName, String> {
        format!("ACCOUNT_{user}_{task}").parse()
    }
}

impl FromStr for LockName {
    type Err = String;
    fn from_str(s: &str) -> Result<LockName, String> {
        check_name("lock name", s, 64, &['_', '.', ':', '-'])?;
        // ZooKeeper refuses these as path segments: a name must work on both backends.
        if s == "." || s == ".." {
            return Err(format!(
                "lock name `{s}` is a path step, not a name (ZooKeeper refuses it)"
            ));
        }
        Ok(LockName(s.to_string()))
    }
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for LockName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A SQL identifier from the config (database, table, column): validated, then quoted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ident(String);

impl Ident {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Backquoted for SQL text. Validation already excluded backquotes.
    pub fn quoted(&self) -> String {
        format!("`{}`", self.0)
    }
}

impl FromStr for Ident {
    type Err = String;
    fn from_str(s: &str) -> Result<Ident, String> {
        check_name("identifier", s, 64, &['_', '$'])?;
        Ok(Ident(s.to_string()))
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A shard weight: a finite number above zero.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize)]
pub struct Weight(f64);

impl Weight {
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Weight {
    type Error = String;
    fn try_from(w: f64) -> Result<Weight, String> {
        // Below 1e-6 shares stop being meaningful (and subnormal numbers lose precision).
        if w.is_finite() && (1e-6..=1e9).contains(&w) {
            Ok(Weight(w))
        } else {
            Err(format!(
                "weight `{w}` must be a number from 0.000001 to 1e9"
            ))
        }
    }
}

impl FromStr for Weight {
    type Err = String;
    fn from_str(s: &str) -> Result<Weight, String> {
        let w: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("weight `{s}` is not a number"))?;
        Weight::try_from(w)
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A duration as operators write it: `30s`, `10m`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration like 30s, 10m or 1h30m ({e})"))?;
    if d.as_secs() > 10 * 365 * 24 * 3600 {
        return Err(format!("duration `{s}` is more than ten years"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses_and_rejects() {
        assert_eq!(
            "db1.example:3306".parse::<HostPort>().unwrap(),
            HostPort::new("db1.example", 3306)
        );
        assert_eq!(
            "[::1]:3307".parse::<HostPort>().unwrap(),
            HostPort::new("::1", 3307)
        );
        assert_eq!(HostPort::new("::1", 3307).to_string(), "[::1]:3307");
        for bad in [
            "db1",
            "db1:",
            ":3306",
            "db1:0",
            "db1:70000",
            "db1:x",
            "a b:1",
            "x';--:1",
        ] {
            assert!(bad.parse::<HostPort>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!("shard-1.a_b".parse::<ShardName>().is_ok());
        assert!("x'; DROP TABLE users; --".parse::<ShardName>().is_err());
        assert!("".parse::<ShardName>().is_err());
        assert!("a".repeat(65).parse::<ShardName>().is_err());
        assert!("photos".parse::<Ident>().is_ok());
        assert!("pho`tos".parse::<Ident>().is_err());
    }

    #[test]
    fn lock_names() {
        let n: LockName = "ACCOUNT_123_MIGRATE".parse().unwrap();
        assert_eq!(n.account(), Some(123));
        assert_eq!("ACCOUNT_123_".parse::<LockName>().unwrap().account(), None);
        assert_eq!("ACCOUNT_x_T".parse::<LockName>().unwrap().account(), None);
        assert_eq!(
            "deploy:web-1.a".parse::<LockName>().unwrap().account(),
            None
        );
        assert!("a".repeat(64).parse::<LockName>().is_ok());
        assert!("a".repeat(65).parse::<LockName>().is_err());
        for bad in ["", "has space", "semi;colon", "quote'", "slash/", "ü"] {
            assert!(bad.parse::<LockName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn weights_are_positive_and_finite() {
        assert_eq!("2.5".parse::<Weight>().unwrap().get(), 2.5);
        for bad in ["0", "-1", "NaN", "inf", "-inf", "x", "", "1e300"] {
            assert!(bad.parse::<Weight>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap().as_secs(), 600);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("-5s").is_err());
    }
}
