//! One sandbox MariaDB server: its directory, option file, process, and readiness.
//!
//! Data directories are copies of one prepared template (initialising takes seconds, copying a
//! fraction of that). Servers run in their own process group so a Ctrl-C at the terminal does not
//! take them down with shardctl, and are stopped by the pid they wrote, never by name.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{Login, NetOptions};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::types::HostPort;

/// The server and installer binaries found on this machine.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub server: PathBuf,
    pub install_db: PathBuf,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(
            [
                "/usr/sbin",
                "/usr/local/sbin",
                "/usr/local/mysql/bin",
                "/usr/bin",
            ]
            .map(PathBuf::from),
        )
        .collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

impl Binaries {
    pub fn locate() -> Result<Binaries> {
        let missing = || {
            Error::Failed(
                "no MariaDB server found (mariadbd or mysqld): install it, e.g. \
                 `apt-get install mariadb-server mariadb-client`"
                    .into(),
            )
        };
        Ok(Binaries {
            server: find(&["mariadbd", "mysqld"]).ok_or_else(missing)?,
            install_db: find(&["mariadb-install-db", "mysql_install_db"]).ok_or_else(missing)?,
        })
    }
}

/// The options every sandbox server shares: small buffers, loose durability (it is a sandbox),
/// loopback only, and a directory the server may read and write files in.
const COMMON_OPTIONS: &str = "\
bind-address=127.0.0.1
skip-name-resolve
innodb-log-file-size=48M
innodb-flush-log-at-trx-commit=2
sync-binlog=0
performance-schema=OFF
max-connections=400
max-allowed-packet=64M
local-infile=1
character-set-server=utf8mb4
";

#[derive(Clone, Debug)]
pub struct ServerProcess {
    pub dir: PathBuf,
    pub port: u16,
    pub server_id: u32,
    /// (increment, offset) for master-master pairs; None for a standalone server.
    pub pair: Option<(u32, u32)>,
    pub files_dir: PathBuf,
    pub buffer_pool_mb: u32,
}

impl ServerProcess {
    pub fn addr(&self) -> HostPort {
        HostPort::new("127.0.0.1", self.port)
    }
    fn cnf(&self) -> PathBuf {
        self.dir.join("my.cnf")
    }
    fn datadir(&self) -> PathBuf {
        self.dir.join("data")
    }
    fn pid_file(&self) -> PathBuf {
        self.dir.join("mariadbd.pid")
    }
    pub fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    fn options(&self) -> String {
        let mut o = format!(
            "[mariadbd]\ndatadir={}\nport={}\nsocket={}\npid-file={}\nlog-error={}\nserver-id={}\n\
             secure-file-priv={}\ninnodb-buffer-pool-size={}M\n{COMMON_OPTIONS}",
            self.datadir().display(),
            self.port,
            self.dir.join("mariadbd.sock").display(),
            self.pid_file().display(),
            self.error_log().display(),
            self.server_id,
            self.files_dir.display(),
            self.buffer_pool_mb,
        );
        if let Some((inc, off)) = self.pair {
            // Each server of a pair writes its own binlog, in its own GTID domain, with
            // interleaved auto-increments so both sides can take writes. Its log also holds
            // what it applies from its peer (log-slave-updates), so an online move off it
            // follows writes made on either server.
            o.push_str(&format!(
                "log-bin=mariadb-bin\nbinlog-format=ROW\nlog-slave-updates=ON\ngtid-domain-id={}\n\
                 auto-increment-increment={inc}\nauto-increment-offset={off}\n",
                self.server_id
            ));
        }
        o
    }

    /// The pid of this server if it is running (checked against its option file, so a reused
    /// pid is never mistaken for it).
    pub fn running_pid(&self) -> Option<i32> {
        let (pid, cmdline) = recorded_process(&self.pid_file())?;
        let needle = self.cnf().display().to_string();
        String::from_utf8_lossy(&cmdline)
            .contains(&needle)
            .then_some(pid)
    }

    /// Copies the template data directory in if this server has none yet. True when created.
    pub fn prepare(&self, template: &Path) -> Result<bool> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("creating the server directory", e))?;
        std::fs::create_dir_all(&self.files_dir)
            .map_err(|e| Error::io("creating the files directory", e))?;
        std::fs::write(self.cnf(), self.options()).map_err(|e| Error::io("writing my.cnf", e))?;
        if self.datadir().exists() {
            return Ok(false);
        }
        let tmp = self.dir.join("data.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        copy_dir(template, &tmp)
            .map_err(|e| Error::io("copying the template data directory", e))?;
        std::fs::rename(&tmp, self.datadir())
            .map_err(|e| Error::io("placing the data directory", e))?;
        Ok(true)
    }

    /// Starts the server in the background (its own process group); does not wait.
    pub fn spawn(&self, bins: &Binaries) -> Result<()> {
        let log = std::fs::File::create(self.dir.join("mariadbd.out"))
            .map_err(|e| Error::io("creating the server's output file", e))?;
        let mut cmd = Command::new(&bins.server);
        cmd.arg(format!("--defaults-file={}", self.cnf().display()));
        if is_root() {
            cmd.arg("--user=root");
        }
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| Error::io("opening the log", e))?,
            )
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io(&format!("starting {}", bins.server.display()), e))?;
        Ok(())
    }

    /// Refuses to start on a port something else listens on: the sandbox would wait for a
    /// server that never binds, or worse, set up whatever does answer there.
    pub fn check_port_free(&self) -> Result<()> {
        check_port_free(self.port)
    }

    /// Waits until the server accepts a login, failing early if it died, and checks it is this
    /// sandbox's server (its data directory), not another one on the same port.
    pub fn wait_ready(&self, login: &Login, timeout: Duration) -> Result<Db> {
        let mut db = self.wait_login(login, timeout)?;
        let datadir: Option<String> =
            db.exec_first("asking for the data directory", "SELECT @@datadir", ())?;
        let ours = self.datadir().canonicalize().ok();
        let theirs = datadir
            .as_deref()
            .and_then(|d| Path::new(d).canonicalize().ok());
        if ours.is_none() || ours != theirs {
            return Err(Error::Failed(format!(
                "the server answering on port {} is not this sandbox's (its data directory is {}): \
                 nothing was written to it; pick other ports with --base-port",
                self.port,
                datadir.unwrap_or_default()
            )));
        }
        Ok(db)
    }

    fn wait_login(&self, login: &Login, timeout: Duration) -> Result<Db> {
        let net = NetOptions {
            connect_timeout: Duration::from_secs(1),
            ..NetOptions::default()
        };
        let start = Instant::now();
        loop {
            match Db::connect(&self.addr(), login, None, &net) {
                Ok(db) => return Ok(db),
                Err(e) if start.elapsed() > timeout => {
                    return Err(Error::Failed(format!(
                        "server {} did not come up within {}s: {e}; see {}",
                        self.addr(),
                        timeout.as_secs(),
                        self.error_log().display()
                    )))
                }
                Err(_) => {
                    // The pid file appears only once the server runs; an early exit leaves
                    // the reason in the error log.
                    if start.elapsed() > Duration::from_secs(3) && self.running_pid().is_none() {
                        let log = std::fs::read_to_string(self.error_log()).unwrap_or_default();
                        let last = log.lines().rfind(|l| l.contains("ERROR")).unwrap_or("");
                        return Err(Error::Failed(format!(
                            "server {} exited during start-up: {last} (see {})",
                            self.addr(),
                            self.error_log().display()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Stops the server by its pid: SIGTERM, then SIGKILL after `grace`. True if it was running.
    pub fn stop(&self, grace: Duration) -> bool {
        self.running_pid().map(|pid| stop_pid(pid, grace)).is_some()
    }
}

/// The pid a pid file names and that process's command line, if it still runs.
pub fn recorded_process(pid_file: &Path) -> Option<(i32, Vec<u8>)> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some((pid, cmdline))
}

/// Starts `cmd` as a child in a process group of its own (a terminal's Ctrl-C does not reach
/// it), its output in `log`, its pid in `pid_file` (how `status` and `down` find it again).
/// `what` names it in errors, with `hint` saying how to get it installed.
pub fn spawn_child(
    mut cmd: Command,
    log: &Path,
    pid_file: &Path,
    what: &str,
    hint: &str,
) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(log)
        .map_err(|e| Error::io(&format!("creating {what}'s output file"), e))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(
            out.try_clone()
                .map_err(|e| Error::io(&format!("opening {what}'s log"), e))?,
        )
        .stderr(out)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Failed(format!("starting {what}: {e} ({hint})")))?;
    std::fs::write(pid_file, child.id().to_string())
        .map_err(|e| Error::io(&format!("writing {what}'s pid file"), e))
}

/// Refuses a port something else listens on: the sandbox would wait for a server that never
/// binds, or worse, set up whatever does answer there.
pub fn check_port_free(port: u16) -> Result<()> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::Usage(format!(
            "port {port} is in use{}: pick other ports with --base-port",
            port_holder(port)
                .map(|h| format!(" by {h}"))
                .unwrap_or_default()
        ))),
    }
}

/// SIGTERM, then SIGKILL after `grace`; returns once the process is gone.
pub fn stop_pid(pid: i32, grace: Duration) {
    // SAFETY: plain syscalls on a pid the caller verified is its server's.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let start = Instant::now();
    while process_alive(pid) {
        if start.elapsed() > grace {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Who listens on 127.0.0.1:`port` (or any address), as "NAME (pid N)", read from /proc: the
/// listening socket's inode, then the process holding a descriptor on it. None where /proc
/// does not say (another user's process, another OS).
fn port_holder(port: u16) -> Option<String> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|f| {
        std::fs::read_to_string(f)
            .ok()?
            .lines()
            .skip(1)
            .find_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                let local_port = cols.get(1)?.rsplit(':').next()?;
                // State 0A is LISTEN.
                (u16::from_str_radix(local_port, 16).ok()? == port && cols.get(3)? == &"0A")
                    .then(|| cols.get(9).map(|s| s.to_string()))?
            })
    })?;
    let needle = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == needle));
        if holds {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return Some(format!("{} (pid {pid})", name.trim()));
        }
    }
    None
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Alive and not a zombie (a server we spawned ourselves lingers as one until we exit).
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A prepared data directory, made once per MariaDB version and reused: `root` may log in from
/// 127.0.0.1 without a password, nothing else is in it.
pub fn template(bins: &Binaries, cache_root: &Path) -> Result<PathBuf> {
    let version = Command::new(&bins.server)
        .arg("--version")
        .output()
        .map_err(|e| Error::io("running the server for its version", e))?;
    let version = String::from_utf8_lossy(&version.stdout);
    let tag: String = version
        .split_whitespace()
        .nth(2)
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .collect();
    let dir = cache_root.join(format!("datadir-{tag}"));
    if dir.join("mysql").is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache_root).map_err(|e| Error::io("creating the template cache", e))?;
    let tmp = cache_root.join(format!("datadir-{tag}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let cnf = cache_root.join(format!("install-{}.cnf", std::process::id()));
    std::fs::write(&cnf, format!("[mariadbd]\n{COMMON_OPTIONS}"))
        .map_err(|e| Error::io("writing the template options", e))?;
    let mut cmd = Command::new(&bins.install_db);
    cmd.arg(format!("--defaults-file={}", cnf.display()))
        .arg(format!("--datadir={}", tmp.display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
    if is_root() {
        cmd.arg("--user=root");
    }
    let out = cmd
        .output()
        .map_err(|e| Error::io("running mariadb-install-db", e))?;
    let _ = std::fs::remove_file(&cnf);
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "mariadb-install-db failed: {}",
            crate::error::one_line(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    // Another process may have won the race; theirs is as good as ours.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(dir)
}
