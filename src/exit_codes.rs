//! Every exit code shardctl uses, in one place (PRODUCT.md section 2).
//!
//! Scripts branch on these, so they never change meaning.

/// Done.
pub const OK: u8 = 0;
/// Failed: a server error, an unreachable server, no such user or shard.
pub const FAILED: u8 = 1;
/// Usage or configuration error: fix the command line or the config file.
pub const USAGE: u8 = 2;
/// The lock is held by someone else.
pub const LOCK_IN_USE: u8 = 3;
/// Refused by a safety check; nothing was changed.
pub const REFUSED: u8 = 4;
/// Partly done: some items failed, the output says which.
pub const PARTIAL: u8 = 5;

/// The table printed in `--help` and the man page.
pub const HELP: &str = "\
Exit codes:
  0  done
  1  failed (server error, unreachable server, no such user or shard)
  2  usage or configuration error (bad flag or value, bad config file, wrong password)
  3  lock in use (held by someone else)
  4  refused by a safety check (nothing was changed)
  5  partly done (some items failed; the JSON output says which)";
