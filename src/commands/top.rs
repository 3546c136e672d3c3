//! `shardctl top`: the live screen, or with `--once` one snapshot for people or scripts.

use crate::cli::TopArgs;
use crate::commands::Ctx;
use crate::error::Result;
use crate::output::{table, Outcome, Report};
use crate::top::{self, app, Snapshot};
use crate::types::shown;

pub fn run(ctx: &Ctx, args: &TopArgs) -> Result<Outcome> {
    let cfg = ctx.config()?;
    if args.once {
        return Outcome::of(top::once(&cfg));
    }
    app::run(
        &cfg,
        &app::TopOptions {
            interval: args.interval,
        },
    )?;
    Outcome::of(Quit)
}

/// The live screen printed nothing to keep.
#[derive(serde::Serialize)]
struct Quit;

impl Report for Quit {
    fn human(&self) -> String {
        String::new()
    }
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

impl Report for Snapshot {
    fn human(&self) -> String {
        let shards = table(
            &[
                "shard", "state", "weight", "users", "share", "target", "in", "out",
            ],
            self.shards.iter().map(|s| {
                vec![
                    s.name.clone(),
                    s.state.to_string(),
                    s.weight.to_string(),
                    s.users.to_string(),
                    format!("{:.1}%", s.share),
                    format!("{:.1}%", s.target_share),
                    s.moves_in.to_string(),
                    s.moves_out.to_string(),
                ]
            }),
        );
        let servers = table(
            &[
                "shard",
                "server",
                "half",
                "status",
                "reachable",
                "io",
                "sql",
                "lag",
                "sessions",
                "q/s",
            ],
            self.servers.iter().map(|s| {
                vec![
                    s.shard.clone(),
                    format!("{}:{}", s.host, s.port),
                    s.half.to_string(),
                    s.status.to_string(),
                    s.error
                        .clone()
                        .map(|e| format!("no: {e}"))
                        .unwrap_or_else(|| "yes".into()),
                    or_dash(s.io_running),
                    or_dash(s.sql_running),
                    or_dash(s.lag_seconds),
                    or_dash(s.sessions),
                    or_dash(s.qps.map(|q| format!("{q:.0}"))),
                ]
            }),
        );
        let (migrations, locks) = (migrations_table(self), locks_table(self));
        let audit = table(
            &["at", "operator", "action", "target"],
            self.audit.iter().map(|a| {
                vec![
                    a.at.clone(),
                    shown(&a.operator),
                    a.action.clone(),
                    shown(&a.target),
                ]
            }),
        );
        let errors: String = self
            .errors
            .iter()
            .map(|(source, e)| format!("\n{source}: {}", crate::types::shown(e)))
            .collect();
        format!("{shards}\n{servers}\n{migrations}\n{locks}\n{audit}{errors}")
    }

    /// A source that could not be read: partly done.
    fn exit_code(&self) -> u8 {
        if self.errors.is_empty() {
            crate::exit_codes::OK
        } else {
            crate::exit_codes::PARTIAL
        }
    }
}

fn migrations_table(s: &Snapshot) -> String {
    table(
        &[
            "migration",
            "user",
            "from",
            "to",
            "step",
            "rows",
            "age",
            "read-only",
        ],
        s.migrations.iter().map(|m| {
            vec![
                m.migration_id.to_string(),
                m.user.to_string(),
                m.from.clone(),
                m.to.clone(),
                if m.in_flight {
                    m.state.clone()
                } else {
                    format!("last: {}", m.state)
                },
                m.rows.to_string(),
                format!("{:.1}s", m.age_seconds),
                or_dash(m.read_only_seconds.map(|s| format!("{s:.2}s"))),
            ]
        }),
    )
}

fn locks_table(s: &Snapshot) -> String {
    table(
        &["lock", "owner", "host", "token", "age", "left", "expired"],
        s.locks.iter().map(|l| {
            vec![
                shown(&l.name),
                shown(&l.owner),
                shown(&l.host),
                l.token.to_string(),
                format!("{:.1}s", l.age_seconds),
                format!("{:.1}s", l.remaining_seconds),
                if l.expired {
                    "EXPIRED".into()
                } else {
                    String::new()
                },
            ]
        }),
    )
}
