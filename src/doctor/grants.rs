//! What a login may do on a server, read from `SHOW GRANTS`, against what shardctl needs
//! (`doctor`'s rules), with the exact `GRANT` statements that would close the gap.

use crate::db::Db;
use crate::doctor::rules::{self, Flavor, Need};
use crate::error::Result;

/// What the login lacks on `db` for `database`, and the statements that grant it.
pub struct Gap {
    pub missing: Vec<Need>,
    pub statements: Vec<String>,
}

impl Gap {
    /// "missing PROCESS (seeing application sessions)": for a one-line report.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .missing
            .iter()
            .map(|n| format!("{} ({})", n.any_of.join(" or "), n.for_what))
            .collect();
        format!("missing {}", names.join(", "))
    }
}

/// The gap between the login's grants and `needs`, or None when nothing is missing.
pub fn gap(db: &mut Db, database: &str, needs: fn(Flavor) -> Vec<Need>) -> Result<Option<Gap>> {
    let (version, account): (String, String) = db
        .exec_first(
            "reading the server version and account",
            "SELECT VERSION(), CURRENT_USER()",
            (),
        )?
        .unwrap_or_default();
    let grants: Vec<String> = db.exec("reading grants", "SHOW GRANTS", ())?;
    let have = rules::privileges_from_grants(&grants, database);
    let missing = rules::missing_privileges(&have, &needs(Flavor::of(&version)));
    if missing.is_empty() {
        return Ok(None);
    }
    let statements = rules::grant_statements(&missing, database, &account);
    Ok(Some(Gap {
        missing,
        statements,
    }))
}
