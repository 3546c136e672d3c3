//! The sandbox's ZooKeeper ensemble (`sandbox up --lock-backend zookeeper`): Debian's
//! ZooKeeper run as child processes in their own process groups, on loopback ports, each found
//! again by its pid file. Never the system service.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::server::{check_port_free, recorded_process, spawn_child, stop_pid};
use crate::error::{Error, Result};
use crate::lock::zk::{four_letter, mode};
use crate::types::HostPort;

/// Where Debian's `zookeeper` package puts the server and its logging backend.
const CLASSPATH: &str = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar";
const MAIN: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";

/// One member of the ensemble.
#[derive(Clone, Debug)]
pub struct ZkNode {
    pub id: u32,
    pub dir: PathBuf,
    pub client_port: u16,
    pub quorum_port: u16,
    pub election_port: u16,
}

/// `n` nodes whose client ports start at `first_port`; the quorum and election ports follow.
pub fn ensemble(dir: &std::path::Path, n: u32, first_port: u16) -> Vec<ZkNode> {
    (0..n)
        .map(|i| ZkNode {
            id: i + 1,
            dir: dir.join(format!("zookeeper{}", i + 1)),
            client_port: first_port + i as u16,
            quorum_port: first_port + (n + 2 * i) as u16,
            election_port: first_port + (n + 2 * i + 1) as u16,
        })
        .collect()
}

impl ZkNode {
    pub fn addr(&self) -> HostPort {
        HostPort::new("127.0.0.1", self.client_port)
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("zookeeper.pid")
    }

    fn config_file(&self) -> PathBuf {
        self.dir.join("zoo.cfg")
    }

    /// The pid of this node's server, if it runs (the pid file's process, started with our
    /// config file).
    pub fn running_pid(&self) -> Option<i32> {
        let (pid, cmdline) = recorded_process(&self.pid_file())?;
        let cfg = self.config_file();
        let ours = cmdline
            .split(|b| *b == 0)
            .any(|a| a == cfg.as_os_str().as_encoded_bytes());
        ours.then_some(pid)
    }

    fn config_text(&self, all: &[ZkNode]) -> String {
        let peers: String = if all.len() > 1 {
            all.iter()
                .map(|n| {
                    format!(
                        "server.{}=127.0.0.1:{}:{}\n",
                        n.id, n.quorum_port, n.election_port
                    )
                })
                .collect()
        } else {
            String::new()
        };
        // A short tick: sessions may be as short as 1 s (tests pause holders past them), and
        // an election takes about a second. No fsync per transaction: a sandbox trades
        // durability for speed, as its MariaDB servers do (a production ensemble syncs).
        format!(
            "# Written by `shardctl sandbox up`.\n\
             tickTime=500\ninitLimit=20\nsyncLimit=10\n\
             minSessionTimeout=1000\nmaxSessionTimeout=120000\n\
             dataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n\
             4lw.commands.whitelist=ruok,srvr,stat,mntr,cons\n\
             extendedTypesEnabled=true\nforceSync=no\n\
             {peers}",
            self.dir.join("data").display(),
            self.client_port
        )
    }

    /// Writes its config and `myid` (first time) and starts it.
    pub fn start(&self, all: &[ZkNode]) -> Result<()> {
        for port in [self.client_port, self.quorum_port, self.election_port] {
            check_port_free(port)?;
        }
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data)
            .map_err(|e| Error::io("creating the ZooKeeper data dir", e))?;
        std::fs::write(data.join("myid"), format!("{}\n", self.id))
            .map_err(|e| Error::io("writing ZooKeeper's myid", e))?;
        std::fs::write(self.config_file(), self.config_text(all))
            .map_err(|e| Error::io("writing zoo.cfg", e))?;
        let mut cmd = Command::new("java");
        cmd.args([
            "-Xms32m",
            "-Xmx128m",
            "-XX:+UseSerialGC",
            // TTL and container nodes are reaped at this interval (default 60 s).
            "-Dznode.container.checkIntervalMs=1000",
            "-cp",
            CLASSPATH,
            MAIN,
        ])
        .arg(self.config_file());
        spawn_child(
            cmd,
            &self.dir.join("zookeeper.out"),
            &self.pid_file(),
            "ZooKeeper (java)",
            "scripts/install-deps installs Debian's zookeeper package",
        )
    }

    /// Whether it serves: `srvr` answers with its role.
    pub fn serving(&self) -> bool {
        four_letter(&self.addr(), "srvr", Duration::from_millis(500))
            .ok()
            .is_some_and(|a| mode(&a).is_some())
    }

    /// Stops it; true if it was running.
    pub fn stop(&self) -> bool {
        self.running_pid()
            .map(|pid| stop_pid(pid, Duration::from_secs(10)))
            .is_some()
    }
}

/// Waits until every node of the ensemble serves (a quorum has elected a leader).
pub fn wait_serving(nodes: &[ZkNode], timeout: Duration) -> Result<()> {
    let start = Instant::now();
    while !nodes.iter().all(ZkNode::serving) {
        if start.elapsed() > timeout {
            let down: Vec<String> = nodes
                .iter()
                .filter(|n| !n.serving())
                .map(|n| {
                    format!(
                        "{} (see {})",
                        n.addr(),
                        n.dir.join("zookeeper.out").display()
                    )
                })
                .collect();
            return Err(Error::Failed(format!(
                "ZooKeeper did not serve within {timeout:?}: {}",
                down.join(", ")
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
