//! MySQL option files (`my.cnf` style), as the `mysql` client reads them: `[group]` headers,
//! `key=value` lines, `#`/`;` comments, quoted values with escapes, and `-`/`_` equivalence in
//! key names. Pure code: no I/O beyond the caller handing in the text.

use std::collections::HashMap;

/// One option file's settings, by group then by normalised key (`-` folded to `_`).
#[derive(Debug, Default, PartialEq)]
pub struct OptionFile {
    groups: HashMap<String, HashMap<String, String>>,
}

impl OptionFile {
    pub fn parse(text: &str) -> Result<OptionFile, String> {
        let mut file = OptionFile::default();
        let mut group: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('!') {
                // !include and !includedir name other files; the caller resolves none of them yet,
                // so refuse rather than silently miss a password.
                return Err(format!(
                    "line {}: `{}` is not supported here",
                    n + 1,
                    line.split_whitespace().next().unwrap_or(line)
                ));
            }
            if let Some(name) = line.strip_prefix('[') {
                let name = name
                    .strip_suffix(']')
                    .ok_or_else(|| format!("line {}: unclosed group header", n + 1))?;
                group = Some(name.trim().to_ascii_lowercase());
                continue;
            }
            let Some(group) = &group else {
                return Err(format!("line {}: option outside any [group]", n + 1));
            };
            let (key, value) = match line.split_once('=') {
                Some((k, v)) => (
                    k.trim(),
                    unquote(v.trim()).map_err(|e| format!("line {}: {e}", n + 1))?,
                ),
                None => (line, String::new()),
            };
            file.groups
                .entry(group.clone())
                .or_default()
                .insert(key.replace('-', "_").to_ascii_lowercase(), value);
        }
        Ok(file)
    }

    /// The value of `key` in the first of `groups` that sets it, later groups overriding
    /// earlier ones the way the client does (`[client]` then `[shardctl]`).
    pub fn get(&self, groups: &[&str], key: &str) -> Option<&str> {
        let key = key.replace('-', "_");
        groups
            .iter()
            .rev()
            .find_map(|g| self.groups.get(*g).and_then(|m| m.get(&key)))
            .map(String::as_str)
    }
}

/// Strips one level of quotes and applies the client's escapes inside them; an unquoted value
/// ends at an inline comment.
fn unquote(v: &str) -> Result<String, String> {
    let Some(q) = v.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        let end = v.find(" #").unwrap_or(v.len());
        return Ok(v[..end].trim_end().to_string());
    };
    let mut out = String::new();
    let mut chars = v[1..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('b') => out.push('\u{8}'),
                Some('s') => out.push(' '),
                Some(other) => out.push(other),
                None => return Err("value ends with a backslash".into()),
            },
            c if c == q => return Ok(out),
            c => out.push(c),
        }
    }
    Err("unterminated quoted value".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_client_and_shardctl_groups() {
        let f = OptionFile::parse(
            "# comment\n[client]\nuser = app\npassword=\"p#ss\\\"word\"\n\
             [mysqld]\nport=1\n[shardctl]\ndefault-character-set = utf8mb4 # trailing\n\
             user=ops\n",
        )
        .unwrap();
        assert_eq!(f.get(&["client"], "user"), Some("app"));
        assert_eq!(f.get(&["client", "shardctl"], "user"), Some("ops"));
        assert_eq!(
            f.get(&["client", "shardctl"], "password"),
            Some("p#ss\"word")
        );
        assert_eq!(
            f.get(&["shardctl"], "default_character_set"),
            Some("utf8mb4")
        );
        assert_eq!(f.get(&["client"], "port"), None);
    }

    #[test]
    fn rejects_malformed_files() {
        assert!(OptionFile::parse("user=x\n").is_err());
        assert!(OptionFile::parse("[client\nuser=x\n").is_err());
        assert!(OptionFile::parse("[client]\npassword=\"open\n").is_err());
        assert!(OptionFile::parse("!include /etc/other.cnf\n").is_err());
    }
}
