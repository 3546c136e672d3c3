use serde::Serialize;
use serde_json::json;

use crate::cli::{LockAcquireArgs, LockCommand, LockReleaseArgs};
use crate::commands::Ctx;
use crate::error::{Error, Result};
use crate::lock::run::{run_under_lock, RunOptions, RunOutcome};
use crate::lock::{ForceReleased, Lease, ListFilter, LockClient, Request};
use crate::output::{table, Outcome, Report};
use crate::ring::audit;
use crate::types::{shown, LockName};

#[derive(Serialize)]
struct Acquired {
    name: String,
    token: u64,
    owner: String,
    expires_at: String,
    /// The lease replaced a dead or expired holder's.
    took_over: bool,
    backend: &'static str,
}

impl Report for Acquired {
    fn human(&self) -> String {
        self.token.to_string()
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct LockList(Vec<Lease>);

fn seconds(s: f64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(s.max(0.0) as u64)).to_string()
}

impl Report for LockList {
    fn human(&self) -> String {
        table(
            &[
                "name",
                "owner",
                "host",
                "pid",
                "token",
                "age",
                "left",
                "GET_LOCK holder",
            ],
            self.0.iter().map(|l| {
                vec![
                    shown(&l.name),
                    shown(&l.owner),
                    shown(&l.host),
                    l.pid.to_string(),
                    l.token.to_string(),
                    seconds(l.age_seconds),
                    if l.expired {
                        "expired".into()
                    } else {
                        seconds(l.remaining_seconds)
                    },
                    match (&l.holder_server, l.holder_connection) {
                        (Some(s), Some(c)) => format!("{s} conn {c}"),
                        _ => String::new(),
                    },
                ]
            }),
        )
    }
}

#[derive(Serialize)]
struct Shown {
    name: String,
    held: bool,
    lease: Option<Lease>,
    /// The session holding GET_LOCK right now: server and connection id.
    getlock_holder: Option<GetLockHolder>,
    backend: &'static str,
}

#[derive(Serialize)]
struct GetLockHolder {
    server: String,
    connection: u64,
}

impl Report for Shown {
    fn human(&self) -> String {
        let mut out = match &self.lease {
            Some(l) => LockList(vec![l.clone()]).human(),
            None => format!("{}: no lease", self.name),
        };
        if let Some(h) = &self.getlock_holder {
            out.push_str(&format!(
                "\nGET_LOCK held on {} by connection {}",
                h.server, h.connection
            ));
        }
        out
    }
}

/// What a lock command would do, for `--dry-run`.
#[derive(Serialize)]
struct Preview {
    name: String,
    action: &'static str,
    /// Whether the action would go through now.
    would: bool,
    lease: Option<Lease>,
    getlock_holder: Option<GetLockHolder>,
    dry_run: bool,
    backend: &'static str,
    /// Exit 3 when a would-be acquisition or release would meet someone else's lock.
    #[serde(skip)]
    in_use_code: bool,
}

impl Report for Preview {
    fn human(&self) -> String {
        let mut out = format!(
            "{} {}: {}",
            self.action,
            self.name,
            if self.would {
                "would go through"
            } else {
                "would not: the lock is someone else's"
            }
        );
        if let Some(l) = &self.lease {
            out.push_str(&format!(
                "\nlease: {} on {} (pid {}, token {}), expires {}",
                shown(&l.owner),
                shown(&l.host),
                l.pid,
                l.token,
                shown(&l.expires_at)
            ));
        }
        if let Some(h) = &self.getlock_holder {
            out.push_str(&format!(
                "\nGET_LOCK held on {} by connection {}",
                h.server, h.connection
            ));
        }
        out
    }

    fn exit_code(&self) -> u8 {
        if self.in_use_code && !self.would {
            crate::exit_codes::LOCK_IN_USE
        } else {
            crate::exit_codes::OK
        }
    }
}

/// The dry run of `action`, from the core's preview of an acquisition.
fn preview(client: &mut LockClient, name: &LockName, action: &'static str) -> Result<Preview> {
    let p = client.preview(name)?;
    Ok(Preview {
        name: name.to_string(),
        action,
        would: p.free,
        lease: p.lease,
        getlock_holder: p
            .getlock_holder
            .map(|(server, connection)| GetLockHolder { server, connection }),
        dry_run: true,
        backend: client.backend(),
        in_use_code: true,
    })
}

#[derive(Serialize)]
struct Released {
    name: String,
    released: bool,
    token: Option<u64>,
    /// On ZooKeeper: children of the lock node that were not its holder's, removed with it.
    stray_children: Vec<String>,
    backend: &'static str,
}

impl Report for Released {
    fn human(&self) -> String {
        if self.released {
            format!("released {}", self.name)
        } else {
            format!("{} was not held", self.name)
        }
    }
}

impl Report for ForceReleased {
    fn human(&self) -> String {
        let mut lines: Vec<String> = self.killed.iter().map(|k| format!("ran {k}")).collect();
        lines.push(if self.released {
            format!(
                "deleted the lease of {} (token {})",
                self.name,
                self.token.unwrap_or(0)
            )
        } else {
            format!("{} had no lease", self.name)
        });
        lines.join("\n")
    }
}

#[derive(Serialize)]
struct Swept {
    released: usize,
    locks: Vec<String>,
    dry_run: bool,
    backend: &'static str,
    #[serde(skip)]
    verbose: bool,
}

impl Report for Swept {
    fn human(&self) -> String {
        // Cron mails whatever a job prints: a sweep that worked prints nothing unless asked.
        if !self.verbose && !self.dry_run {
            return String::new();
        }
        let verb = if self.dry_run {
            "would release"
        } else {
            "released"
        };
        format!(
            "{verb} {} expired locks{}",
            self.released,
            if self.locks.is_empty() {
                String::new()
            } else {
                format!(": {}", self.locks.join(", "))
            }
        )
    }
}

impl Report for RunOutcome {
    fn human(&self) -> String {
        String::new()
    }
    fn exit_code(&self) -> u8 {
        self.exit_code.clamp(0, 255) as u8
    }
}

fn request(args: &LockAcquireArgs, hold_session: bool, purpose: String) -> Result<Request> {
    let ttl = args.ttl.get();
    let owner = args.owner.clone().unwrap_or_else(audit::operator);
    Ok(Request {
        name: args.name.clone(),
        ttl,
        metadata: json!({ "owner": owner, "host": audit::hostname(), "pid": std::process::id(),
                          "ttl_seconds": ttl.as_secs_f64(), "purpose": purpose,
                          // Only `lock run` keeps a session, and it runs a command.
                          "runs_command": hold_session }),
        owner,
        purpose,
        hold_session,
    })
}

pub fn run(ctx: &Ctx, cmd: LockCommand) -> Result<Outcome> {
    let cfg = ctx.config()?;
    // Every verb but `lock run` (which owns its client for the command's life) opens one here.
    let connect = || LockClient::new(&cfg);
    match cmd {
        LockCommand::Run(args) if args.lock.dry_run => {
            Outcome::of(preview(&mut connect()?, &args.lock.name, "run")?)
        }
        LockCommand::Run(args) => {
            let purpose = args
                .command
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ");
            let req = request(&args.lock, true, purpose.chars().take(255).collect())?;
            let outcome = run_under_lock(
                &cfg,
                &RunOptions {
                    request: req,
                    wait: args.lock.wait.unwrap_or_default(),
                    command: args.command,
                    grace: args.grace,
                },
                &ctx.ui,
            )?;
            Outcome::of(outcome)
        }
        LockCommand::Acquire(args) if args.dry_run => {
            Outcome::of(preview(&mut connect()?, &args.name, "acquire")?)
        }
        LockCommand::Acquire(args) => {
            let req = request(&args, false, args.purpose.clone().unwrap_or_default())?;
            let client = &mut connect()?;
            let (held, lease) = client.acquire_audited(&req, args.wait.unwrap_or_default())?;
            Outcome::of(Acquired {
                name: held.name.to_string(),
                token: held.token,
                owner: held.owner,
                expires_at: lease.map(|l| l.expires_at).unwrap_or_default(),
                took_over: held.took_over,
                backend: client.backend(),
            })
        }
        LockCommand::Release(args) => release(&mut connect()?, &args),
        LockCommand::Show(args) => {
            let client = &mut connect()?;
            let lease = client.read(args.name.as_str())?;
            let holder = client.live_holder(&args.name, lease.as_ref())?;
            Outcome::of(Shown {
                name: args.name.to_string(),
                held: lease.as_ref().is_some_and(|l| !l.expired) || holder.is_some(),
                lease,
                getlock_holder: holder
                    .map(|(server, connection)| GetLockHolder { server, connection }),
                backend: client.backend(),
            })
        }
        LockCommand::List(args) => Outcome::of(LockList(connect()?.list(&ListFilter {
            expired_only: args.expired,
            prefix: args.prefix.as_deref(),
            owner: args.owner.as_deref(),
        })?)),
        LockCommand::ForceRelease(args) => {
            if args.reason.trim().is_empty() {
                return Err(Error::Usage("--reason must say why".into()));
            }
            let client = &mut connect()?;
            if args.dry_run {
                let mut p = preview(client, &args.name, "force-release")?;
                p.would = p.lease.is_some() || p.getlock_holder.is_some();
                p.in_use_code = false;
                return Outcome::of(p);
            }
            Outcome::of(client.force_release(&args.name, &args.reason)?)
        }
        LockCommand::Sweep(args) => {
            let client = &mut connect()?;
            let locks = client.sweep(args.limit, args.dry_run)?;
            Outcome::of(Swept {
                released: locks.len(),
                locks,
                dry_run: args.dry_run,
                backend: client.backend(),
                verbose: ctx.ui.verbose,
            })
        }
    }
}

/// `lock release`: the holder gives its lock back (or, dry, whether it would).
fn release(client: &mut LockClient, args: &LockReleaseArgs) -> Result<Outcome> {
    if args.dry_run {
        let mut p = preview(client, &args.name, "release")?;
        p.would = p
            .lease
            .as_ref()
            .is_some_and(|l| args.token.is_none_or(|t| t == l.token));
        p.in_use_code = p.lease.is_some();
        return Outcome::of(p);
    }
    let (lease, released) = client.release_audited(&args.name, args.token)?;
    Outcome::of(Released {
        name: args.name.to_string(),
        released,
        stray_children: lease
            .as_ref()
            .filter(|_| released)
            .map(Lease::stray_children)
            .unwrap_or_default(),
        token: lease.map(|l| l.token),
        backend: client.backend(),
    })
}
