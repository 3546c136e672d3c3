use std::path::PathBuf;

use serde::Serialize;

use crate::cli::{LockBackendArg, SandboxCommand};
use crate::commands::Ctx;
use crate::error::{Error, Result};
use crate::output::{table, Outcome, Report};
use crate::sandbox::{self, Spec, Status, UpOptions, UpOutcome};

#[derive(Serialize)]
struct Up {
    #[serde(flatten)]
    outcome: UpOutcome,
    export: String,
}

impl Report for Up {
    fn human(&self) -> String {
        let o = &self.outcome;
        let mut lines = o
            .notes
            .iter()
            .map(|n| format!("note: {n}"))
            .collect::<Vec<_>>();
        lines.push(if o.created {
            format!(
                "sandbox created: {} users, {} rows on the shards",
                o.users, o.rows
            )
        } else if o.started.is_empty() {
            "sandbox already running".to_string()
        } else {
            format!("restarted {}", o.started.join(", "))
        });
        lines.push(self.export.clone());
        lines.join("\n")
    }
}

impl Report for Status {
    fn human(&self) -> String {
        let rows = self.servers.iter().map(|s| {
            vec![
                s.role.to_string(),
                s.shard.clone().unwrap_or_default(),
                s.half.map(|h| h.to_string()).unwrap_or_default(),
                format!("{}:{}", s.host, s.port),
                if s.running { "running" } else { "stopped" }.to_string(),
            ]
        });
        format!(
            "{}\nconfig: {}",
            table(&["role", "shard", "half", "server", "state"], rows),
            self.config.display()
        )
    }
}

#[derive(Serialize)]
struct Down {
    dir: PathBuf,
    stopped: Vec<String>,
}

impl Report for Down {
    fn human(&self) -> String {
        if self.stopped.is_empty() {
            "nothing was running".into()
        } else {
            format!("stopped {}", self.stopped.join(", "))
        }
    }
}

pub fn run(ctx: &Ctx, cmd: SandboxCommand) -> Result<Outcome> {
    match cmd {
        SandboxCommand::Up(args) => {
            let zookeeper_nodes = match (args.lock_backend, args.zookeeper_nodes) {
                (LockBackendArg::Zookeeper, n) => n.unwrap_or(3),
                (LockBackendArg::Mysql, None) => 0,
                (LockBackendArg::Mysql, Some(_)) => {
                    return Err(Error::Usage(
                        "--zookeeper-nodes is for --lock-backend zookeeper".into(),
                    ))
                }
            };
            let outcome = sandbox::up(
                &UpOptions {
                    dir: args.dir.dir,
                    spec: Spec {
                        shards: args.shards,
                        base_port: args.base_port,
                        buffer_pool_mb: args.buffer_pool_mb,
                        spare_shards: args.spare_shards,
                        cache: args.cache,
                        write_guard: args.write_guard,
                        zookeeper_nodes,
                    },
                    users: args.users,
                },
                &|cfg| ctx.changes(cfg),
                &ctx.ui,
            )?;
            let export = format!("export SHARDCTL_CONFIG={}", outcome.config.display());
            Outcome::of(Up { outcome, export })
        }
        SandboxCommand::Status(args) => Outcome::of(sandbox::status(&args.dir)?),
        SandboxCommand::Down(args) => {
            let stopped = sandbox::down(&args.dir)?;
            Outcome::of(Down {
                dir: args.dir,
                stopped,
            })
        }
    }
}
