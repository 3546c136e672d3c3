//! The sandbox's memcached (`sandbox up --cache`): a child process in its own process group, on
//! a loopback port, found again by its pid file.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::server::{check_port_free, is_root, recorded_process, spawn_child, stop_pid};
use crate::error::{Error, Result};
use crate::types::HostPort;

#[derive(Clone, Debug)]
pub struct CacheProcess {
    pub dir: PathBuf,
    pub port: u16,
}

impl CacheProcess {
    pub fn addr(&self) -> HostPort {
        HostPort::new("127.0.0.1", self.port)
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("memcached.pid")
    }

    /// The pid of this sandbox's memcached, if it runs (the pid file's process, listening on
    /// our port).
    pub fn running_pid(&self) -> Option<i32> {
        let (pid, cmdline) = recorded_process(&self.pid_file())?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let port = self.port.to_string();
        (args.first().is_some_and(|a| a.ends_with(b"memcached"))
            && args
                .windows(2)
                .any(|w| w[0] == b"-p" && w[1] == port.as_bytes()))
        .then_some(pid)
    }

    /// Starts it (16 MB, no UDP) and waits until it answers.
    pub fn start(&self) -> Result<()> {
        check_port_free(self.port)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io("creating the cache dir", e))?;
        let mut cmd = Command::new("memcached");
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "0",
            "-m",
            "16",
        ]);
        if is_root() {
            cmd.args(["-u", "root"]);
        }
        spawn_child(
            cmd,
            &self.dir.join("memcached.out"),
            &self.pid_file(),
            "memcached",
            "scripts/install-deps installs it",
        )?;
        let start = Instant::now();
        while crate::cache::memcached::version(&self.addr(), Duration::from_millis(200)).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(Error::Failed(format!(
                    "memcached on port {} did not answer within 10 s (see {})",
                    self.port,
                    self.dir.join("memcached.out").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops it; true if it was running.
    pub fn stop(&self) -> bool {
        self.running_pid()
            .map(|pid| stop_pid(pid, Duration::from_secs(5)))
            .is_some()
    }
}
