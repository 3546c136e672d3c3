//! MySQL option files (`my.cnf` style), as the `mysql` client reads them: `[group]` headers,
//! `key=value` lines, `#`/`;` comments, quoted values with escapes, `-`/`_` equivalence in key
//! names, and `!include FILE` / `!includedir DIR` (every `*.cnf` file in it, by name).
//!
//! Pure code: reading files and listing directories is handed in by the caller (`Files`), so
//! the parser is tested, and fuzzed, without touching the disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Nested includes deeper than this are refused (a loop that escapes the cycle check, such as
/// a directory including itself through a symlink, still ends).
const MAX_DEPTH: usize = 10;

/// One line of an option file that means something.
#[derive(Debug, PartialEq)]
enum Line {
    Group(String),
    Set(String, String),
    Include(PathBuf),
    IncludeDir(PathBuf),
}

/// How the loader reaches files: the real disk (with permission checks) or a test's map.
pub trait Files {
    fn read(&self, path: &Path) -> Result<String, String>;
    /// The `*.cnf` files of a directory, sorted by name.
    fn list(&self, dir: &Path) -> Result<Vec<PathBuf>, String>;
}

/// Settings by group then by normalised key (`-` folded to `_`, lower case); later lines
/// override earlier ones, across included files, as the client does.
#[derive(Debug, Default, PartialEq)]
pub struct OptionFile {
    groups: HashMap<String, HashMap<String, String>>,
    /// Every file read, in order, and whether it set a `password`.
    pub files: Vec<(PathBuf, bool)>,
}

fn parse_lines(text: &str) -> Result<Vec<Line>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", n + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(directive) = line.strip_prefix('!') {
            let (word, arg) = directive
                .split_once(char::is_whitespace)
                .map(|(w, a)| (w, a.trim()))
                .unwrap_or((directive, ""));
            if arg.is_empty() {
                return Err(at(format!("`!{word}` needs a path")));
            }
            out.push(match word {
                "include" => Line::Include(PathBuf::from(arg)),
                "includedir" => Line::IncludeDir(PathBuf::from(arg)),
                other => return Err(at(format!("unknown directive `!{other}`"))),
            });
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| at("unclosed group header".into()))?;
            out.push(Line::Group(name.trim().to_ascii_lowercase()));
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), unquote(v.trim()).map_err(at)?),
            None => (line, String::new()),
        };
        if key.is_empty() {
            return Err(at("an option with no name".into()));
        }
        out.push(Line::Set(key.replace('-', "_").to_ascii_lowercase(), value));
    }
    Ok(out)
}

impl OptionFile {
    /// One file's text, with no includes allowed (there is nowhere to read them from).
    pub fn parse(text: &str) -> Result<OptionFile, String> {
        struct NoFiles;
        impl Files for NoFiles {
            fn read(&self, p: &Path) -> Result<String, String> {
                Err(format!("cannot include {} here", p.display()))
            }
            fn list(&self, p: &Path) -> Result<Vec<PathBuf>, String> {
                Err(format!("cannot include {} here", p.display()))
            }
        }
        let mut file = OptionFile::default();
        file.apply(Path::new("-"), text, &NoFiles, &mut Vec::new())?;
        Ok(file)
    }

    /// Reads `path` and everything it includes.
    pub fn load(path: &Path, files: &dyn Files) -> Result<OptionFile, String> {
        let mut file = OptionFile::default();
        file.include(path, files, &mut Vec::new())?;
        Ok(file)
    }

    /// Reads another file on top of this one (the client reads several in turn).
    pub fn load_more(&mut self, path: &Path, files: &dyn Files) -> Result<(), String> {
        self.include(path, files, &mut Vec::new())
    }

    fn include(
        &mut self,
        path: &Path,
        files: &dyn Files,
        stack: &mut Vec<PathBuf>,
    ) -> Result<(), String> {
        if stack.iter().any(|p| p == path) {
            return Err(format!("{} includes itself", path.display()));
        }
        if stack.len() >= MAX_DEPTH {
            return Err(format!(
                "{}: includes nested more than {MAX_DEPTH} deep",
                path.display()
            ));
        }
        let text = files.read(path)?;
        stack.push(path.to_path_buf());
        let result = self.apply(path, &text, files, stack);
        stack.pop();
        result
    }

    fn apply(
        &mut self,
        path: &Path,
        text: &str,
        files: &dyn Files,
        stack: &mut Vec<PathBuf>,
    ) -> Result<(), String> {
        let lines = parse_lines(text).map_err(|e| format!("{}: {e}", path.display()))?;
        let here = path.parent().unwrap_or(Path::new("."));
        // Relative includes are taken from the including file's directory.
        let resolve = |p: &Path| here.join(p);
        let mut group: Option<String> = None;
        let mut sets_password = false;
        for line in lines {
            match line {
                Line::Group(g) => group = Some(g),
                Line::Set(key, value) => {
                    let Some(g) = &group else {
                        return Err(format!(
                            "{}: option `{key}` outside any [group]",
                            path.display()
                        ));
                    };
                    sets_password |= key == "password";
                    self.groups.entry(g.clone()).or_default().insert(key, value);
                }
                Line::Include(p) => self.include(&resolve(&p), files, stack)?,
                Line::IncludeDir(d) => {
                    for p in files.list(&resolve(&d))? {
                        self.include(&p, files, stack)?;
                    }
                }
            }
        }
        self.files.push((path.to_path_buf(), sets_password));
        Ok(())
    }

    /// The value of `key` in the last of `groups` that sets it (`[client]` then `[shardctl]`:
    /// the program's own group wins, as with the client).
    pub fn get(&self, groups: &[&str], key: &str) -> Option<&str> {
        let key = key.replace('-', "_").to_ascii_lowercase();
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

/// Parses `data` as an option file with includes resolved against a few in-memory files: what
/// the fuzz target and its fixed-corpus test feed. Never panics; the result is only an error
/// or settings.
pub fn fuzz_one(data: &[u8]) -> Result<OptionFile, String> {
    struct Mem<'a>(&'a str);
    impl Files for Mem<'_> {
        fn read(&self, p: &Path) -> Result<String, String> {
            match p.file_name().and_then(|n| n.to_str()) {
                Some("self.cnf") => Ok(self.0.to_string()),
                Some("a.cnf") => Ok("[client]\nuser=a\n!include b.cnf\n".into()),
                Some("b.cnf") => Ok("[shardctl]\npassword='b'\n".into()),
                _ => Err(format!("{}: no such file", p.display())),
            }
        }
        fn list(&self, _: &Path) -> Result<Vec<PathBuf>, String> {
            Ok(vec![
                PathBuf::from("/d/a.cnf"),
                PathBuf::from("/d/self.cnf"),
            ])
        }
    }
    let text = String::from_utf8_lossy(data);
    let file = OptionFile::load(Path::new("/d/self.cnf"), &Mem(&text))?;
    let _ = file.get(&["client", "shardctl"], "password");
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Vec<(&'static str, &'static str)>);
    impl Files for Mem {
        fn read(&self, p: &Path) -> Result<String, String> {
            self.0
                .iter()
                .find(|(n, _)| Path::new(n) == p)
                .map(|(_, t)| t.to_string())
                .ok_or_else(|| format!("{}: no such file", p.display()))
        }
        fn list(&self, d: &Path) -> Result<Vec<PathBuf>, String> {
            let mut v: Vec<PathBuf> = self
                .0
                .iter()
                .map(|(n, _)| PathBuf::from(n))
                .filter(|p| p.parent() == Some(d) && p.extension().is_some_and(|e| e == "cnf"))
                .collect();
            v.sort();
            Ok(v)
        }
    }

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
        assert_eq!(f.get(&["client"], "USER"), Some("app"));
    }

    #[test]
    fn quoting_and_escapes() {
        let f = OptionFile::parse(
            "[client]\npassword='a b\\tc'\nuser=\"x\\\\y\"\nhost = plain # comment\nskip-ssl\n",
        )
        .unwrap();
        assert_eq!(f.get(&["client"], "password"), Some("a b\tc"));
        assert_eq!(f.get(&["client"], "user"), Some("x\\y"));
        assert_eq!(f.get(&["client"], "host"), Some("plain"));
        assert_eq!(f.get(&["client"], "skip_ssl"), Some(""));
    }

    #[test]
    fn follows_includes_in_order() {
        let files = Mem(vec![
            (
                "/etc/my.cnf",
                "[client]\nuser=base\npassword=old\n!include extra/site.cnf\n!includedir /etc/my.d\n[client]\nport=3307\n",
            ),
            ("/etc/extra/site.cnf", "[client]\npassword=site\n"),
            ("/etc/my.d/20-late.cnf", "[shardctl]\nuser=late\n"),
            ("/etc/my.d/10-early.cnf", "[shardctl]\nuser=early\npassword=early\n"),
            ("/etc/my.d/notes.txt", "[shardctl]\nuser=ignored\n"),
        ]);
        let f = OptionFile::load(Path::new("/etc/my.cnf"), &files).unwrap();
        assert_eq!(f.get(&["client", "shardctl"], "user"), Some("late"));
        assert_eq!(f.get(&["client", "shardctl"], "password"), Some("early"));
        assert_eq!(f.get(&["client"], "password"), Some("site"));
        assert_eq!(f.get(&["client"], "port"), Some("3307"));
        let read: Vec<(String, bool)> = f
            .files
            .iter()
            .map(|(p, pw)| (p.display().to_string(), *pw))
            .collect();
        assert_eq!(
            read,
            [
                ("/etc/extra/site.cnf".to_string(), true),
                ("/etc/my.d/10-early.cnf".to_string(), true),
                ("/etc/my.d/20-late.cnf".to_string(), false),
                ("/etc/my.cnf".to_string(), true),
            ]
        );
    }

    #[test]
    fn refuses_loops_and_missing_files() {
        let files = Mem(vec![
            ("/a.cnf", "!include /b.cnf\n"),
            ("/b.cnf", "!include /a.cnf\n"),
            ("/c.cnf", "[client]\n!include /missing.cnf\n"),
        ]);
        let e = OptionFile::load(Path::new("/a.cnf"), &files).unwrap_err();
        assert!(e.contains("includes itself"), "{e}");
        let e = OptionFile::load(Path::new("/c.cnf"), &files).unwrap_err();
        assert!(e.contains("/missing.cnf"), "{e}");
    }

    #[test]
    fn rejects_malformed_files() {
        for bad in [
            "user=x\n",
            "[client\nuser=x\n",
            "[client]\npassword=\"open\n",
            "[client]\npassword='x\\",
            "[client]\n=x\n",
            "!include\n",
            "!frobnicate /x\n",
            "!include /etc/other.cnf\n",
        ] {
            assert!(OptionFile::parse(bad).is_err(), "{bad:?}");
        }
    }
}
