//! `shardctl top` against a real federation: one snapshot for scripts, and the live screen
//! under tmux (a private socket) during a `rebalance apply`, seen moving and finishing, then
//! quit with `q` and the terminal back to normal.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin, federation, is_stopped, wait_until, Env, Federation, Frozen};
use serde_json::Value;

fn fed() -> &'static Federation {
    federation("top", 25280, 2)
}

/// The live test needs every server answering; the frozen-server test freezes one.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn world(name: &str) -> Env {
    let env = Env::new(fed(), name);
    env.register_shards();
    env
}

#[test]
fn one_snapshot_has_every_panel_and_needs_no_terminal() {
    let _turn = serial();
    let env = world("top_once");
    for u in 8100..8110 {
        env.seed_user(u, 3);
    }
    env.run(&["lock", "acquire", "nightly-report", "--ttl", "60s"])
        .ok();
    let doc = env.json(&["top", "--once"]);
    for key in ["shards", "servers", "migrations", "locks", "audit"] {
        assert!(doc[key].is_array(), "{key}: {doc}");
    }
    let users: u64 = doc["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["users"].as_u64().unwrap())
        .sum();
    assert_eq!(users, 10);
    let servers = doc["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 4);
    assert!(servers.iter().all(|s| s["reachable"] == true), "{doc}");
    assert!(servers
        .iter()
        .all(|s| s["io_running"] == true && s["sql_running"] == true));
    assert!(doc["locks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["name"] == "nightly-report"));
    assert!(!doc["audit"].as_array().unwrap().is_empty());
    let table = env.run(&["top", "--once"]).ok();
    assert!(table.stdout.contains("nightly-report"), "{}", table.stdout);

    // Without a terminal the live screen is refused, pointing at --once.
    let r = env.run(&["top", "--format", "json"]);
    assert_eq!(r.code, 2);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--once"));
    let r = env.run(&["top", "--interval", "1ms", "--once"]);
    assert_eq!(r.code, 2);
}

/// A tmux server on a private socket, killed when dropped.
struct Tmux(String);

impl Tmux {
    fn start(width: u16, height: u16) -> Tmux {
        let t = Tmux(format!("shardctl-top-{}", std::process::id()));
        let ok = t
            .cmd(&[
                "new-session",
                "-d",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
                "sh",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session");
        t
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.0]).args(args);
        c
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "0"];
        args.extend(keys);
        assert!(self.cmd(&args).status().unwrap().success());
    }

    fn screen(&self) -> String {
        let out = self
            .cmd(&["capture-pane", "-p", "-t", "0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alternate_screen(&self) -> bool {
        let out = self
            .cmd(&["display-message", "-p", "-t", "0", "#{alternate_on}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    fn wait_for(&self, what: &str, within: Duration, f: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            assert!(
                start.elapsed() < within,
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .cmd(&["kill-server"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A child process of `pid`, from /proc.
fn child_of(pid: i32) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let (_, rest) = stat.rsplit_once(") ")?;
        let ppid: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == pid).then(|| e.file_name().to_string_lossy().parse().ok())?
    })
}

/// `top` live in a 150x45 terminal for `env`, refreshing every 200 ms, after its first
/// refresh; the shell prints its exit code when it ends.
fn top_in_tmux(env: &Env) -> Tmux {
    let tmux = Tmux::start(150, 45);
    tmux.keys(&[
        &format!(
            "SHARDCTL_CONFIG={} {} top --interval 200ms; echo EXIT=$?",
            env.config.display(),
            bin().display()
        ),
        "Enter",
    ]);
    tmux.wait_for("the first refresh", Duration::from_secs(20), |s| {
        s.contains("ring read 0s ago") && s.contains("servers (4)")
    });
    tmux
}

#[test]
fn the_live_screen_follows_a_rebalance_and_quits_cleanly() {
    let _turn = serial();
    let env = world("top_live");
    let users: Vec<u64> = (8200..8206).collect();
    let mut moves = Vec::new();
    for &u in &users {
        let home = env.seed_user(u, 5);
        moves.push(
            serde_json::json!({"user": u, "from": home, "to": env.other_shard(&home), "rows": 7}),
        );
    }
    let plan = env.write_plan("plan.json", moves);
    let tmux = top_in_tmux(&env);
    assert!(tmux.alternate_screen());

    // A rebalance stops in the middle of its first batch's copy: top shows it in flight.
    let apply = env.spawn(
        &["rebalance", "apply", &plan, "--jobs", "1"],
        &[("SHARDCTL_FAILPOINT_STOP", "migrate.copy_mid")],
    );
    wait_until("the apply to pause mid-copy", || is_stopped(apply.id()));
    let s = tmux.wait_for("a migration in flight", Duration::from_secs(10), |s| {
        s.contains("copying") && s.contains("ACCOUNT_")
    });
    assert!(users.iter().any(|u| s.contains(&u.to_string())), "{s}");
    // Every batch pauses at the same point: resume it until the apply is done.
    let mut apply = apply;
    let status = loop {
        if let Some(status) = apply.try_wait().unwrap() {
            break status;
        }
        if is_stopped(apply.id()) {
            // SAFETY: resuming the process this test paused.
            unsafe { libc::kill(apply.id() as i32, libc::SIGCONT) };
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    tmux.wait_for("the moves to finish", Duration::from_secs(10), |s| {
        s.contains("last: done") && !s.contains("copying")
    });

    // `q` quits at once, exit 0, and the terminal is the shell's again.
    let quit = Instant::now();
    tmux.keys(&["q"]);
    let s = tmux.wait_for("top to exit", Duration::from_secs(5), |s| {
        // A line of its own, or after the shell's prompt when the typed-ahead command line
        // was echoed before the prompt was drawn.
        s.lines()
            .any(|l| l.trim_start_matches("# ").starts_with("EXIT="))
    });
    assert!(
        quit.elapsed() < Duration::from_secs(1),
        "{:?}",
        quit.elapsed()
    );
    assert!(
        s.lines().any(|l| l.trim_start_matches("# ") == "EXIT=0"),
        "{s}"
    );
    assert!(!tmux.alternate_screen());
    // A terminal that hangs up (the window closed) ends top too; it never spins on unseen.
    tmux.keys(&[
        &format!(
            "SHARDCTL_CONFIG={} {} top",
            env.config.display(),
            bin().display()
        ),
        "Enter",
    ]);
    tmux.wait_for("top again", Duration::from_secs(20), |s| {
        s.contains("ring read")
    });
    let shell: i32 = String::from_utf8_lossy(
        &tmux
            .cmd(&["display-message", "-p", "-t", "0", "#{pane_pid}"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .parse()
    .unwrap();
    let top = child_of(shell).expect("top runs under the pane's shell");
    assert!(tmux.cmd(&["kill-server"]).status().unwrap().success());
    wait_until("top to exit when its terminal hangs up", || {
        std::fs::read_to_string(format!("/proc/{top}/stat")).map_or(true, |s| {
            s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z'))
        })
    });
    let doc: Value = env.json(&["top", "--once"]);
    assert!(doc["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["in_flight"] == false));
}

#[test]
fn a_frozen_server_shows_as_such_and_does_not_slow_the_refresh() {
    let _turn = serial();
    let env = world("top_frozen");
    let frozen = fed().shards()[0].1[1];
    let frozen_server = Frozen::new(fed().server_pid("shard1b"));
    let start = Instant::now();
    let r = env.run(&["top", "--once", "--format", "json"]);
    let took = start.elapsed();
    drop(frozen_server);
    let doc = r.ok().json();
    // Bounded by the probes' wait (the connect timeout and two probe statements), not by the
    // frozen server; the ring read itself is as fast as ever.
    assert!(took < Duration::from_secs(14), "{took:?}");
    assert!(doc["refresh_ms"].as_f64().unwrap() < 100.0, "{doc}");
    let servers = doc["servers"].as_array().unwrap();
    let row = servers.iter().find(|s| s["port"] == frozen).unwrap();
    assert_eq!(row["reachable"], false, "{row}");
    assert!(row["error"].as_str().unwrap().contains("answer"), "{row}");
    assert!(servers
        .iter()
        .filter(|s| s["port"] != frozen)
        .all(|s| s["reachable"] == true));
}

#[test]
fn a_frozen_ring_shows_its_age_and_the_panels_come_back() {
    let _turn = serial();
    let env = world("top_ring_frozen");
    let tmux = top_in_tmux(&env);
    let ring = Frozen::new(fed().server_pid("global"));
    // The header's age grows while the ring does not answer, and the ring's panels say why.
    let s = tmux.wait_for("the age to show", Duration::from_secs(20), |s| {
        s.contains("STALE") && (4..=19).any(|n| s.contains(&format!("ring read {n}s ago")))
    });
    assert!(s.contains("servers (4)"), "the last panels stay: {s}");
    // The servers' probes do not wait for the ring: a shard server frozen now shows as such.
    let server = Frozen::new(fed().server_pid("shard1a"));
    tmux.wait_for(
        "the frozen shard server to show",
        Duration::from_secs(20),
        |s| s.contains("NO: does not answer"),
    );
    drop(server);
    drop(ring);
    tmux.wait_for("the ring to be read again", Duration::from_secs(20), |s| {
        !s.contains("STALE") && s.contains("ring read 0s ago")
    });
    tmux.keys(&["q"]);
    tmux.wait_for("top to quit", Duration::from_secs(5), |s| {
        s.contains("EXIT=0")
    });
}
