//! Completions and man pages are generated from the clap tree and committed; this fails when the
//! committed copies are stale. Regenerate with `UPDATE_GENERATED=1 cargo test --test generated`.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

use std::path::Path;

#[test]
fn completions_and_man_pages_match_the_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        shardctl::docs::write_all(root).unwrap();
    }
    let mut stale = Vec::new();
    for (rel, text) in shardctl::docs::generated_files() {
        match std::fs::read_to_string(root.join(&rel)) {
            Ok(committed) if committed == text => {}
            _ => stale.push(rel),
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated files {stale:?}: run `UPDATE_GENERATED=1 cargo test --test generated` and commit"
    );
}

#[test]
fn man_page_documents_the_exit_codes() {
    let files = shardctl::docs::generated_files();
    let (_, page) = files.iter().find(|(p, _)| p == "man/shardctl.1").unwrap();
    for code in ["lock in use", "refused by a safety check", "partly done"] {
        assert!(page.contains(code), "{code}");
    }
}

#[test]
fn every_json_error_kind_is_in_the_readme() {
    use shardctl::error::{DbError, Error};
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let s = String::new;
    let all = [
        Error::Usage(s()),
        Error::Config(s()),
        Error::NotFound(s()),
        Error::Conflict(s()),
        Error::Unreachable(s()),
        Error::Database(DbError::inconsistent("")),
        Error::LockInUse(s()),
        Error::LockLost(s()),
        Error::Refused(s()),
        Error::Failed(s()),
    ];
    for e in &all {
        // Exhaustive on purpose: a new variant must be added above (and to the README).
        match e {
            Error::Usage(_)
            | Error::Config(_)
            | Error::NotFound(_)
            | Error::Conflict(_)
            | Error::Unreachable(_)
            | Error::Database(_)
            | Error::LockInUse(_)
            | Error::LockLost(_)
            | Error::Refused(_)
            | Error::Failed(_) => {}
        }
        assert!(
            readme.contains(&format!("`{}`", e.kind())),
            "README's list of error kinds lacks `{}`",
            e.kind()
        );
    }
}
