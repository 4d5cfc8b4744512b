//! A real Redis Cluster on loopback: three masters with a replica each,
//! started from `redis-server --cluster-enabled yes` and joined by
//! `redis-cli --cluster create`. Its nodes are stopped when it is dropped,
//! and by a watchdog if the test process dies first.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Process, free_port, required, wait_for_port};

/// How long a master may be unreachable before its replica takes over.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

pub struct RedisCluster {
    dir: PathBuf,
    /// The nodes' process group, for the watchdog.
    group: u32,
    nodes: Vec<Node>,
}

struct Node {
    port: u16,
    bus: u16,
    process: Option<Process>,
}

impl RedisCluster {
    /// A running cluster with every slot served; `None` (the test skips)
    /// when `redis-server` is missing outside CI.
    pub fn start() -> Option<Self> {
        let missing = ["redis-server", "redis-cli"].into_iter().find(|bin| {
            Command::new(bin)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_err()
        });
        required(
            "redis-server and redis-cli (for a Redis Cluster)",
            missing.map(|bin| format!("`{bin}` is not installed")),
        )?;
        let dir = std::env::temp_dir().join(format!("portcullis-cluster-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut cluster = Self {
            dir,
            group: 0,
            nodes: (0..6)
                .map(|_| Node {
                    port: free_port(),
                    bus: free_port(),
                    process: None,
                })
                .collect(),
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i);
        }
        cluster.watch();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("redis-cli --cluster create: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_until_serving(Duration::from_secs(30));
        cluster.wait_until_replicated(Duration::from_secs(30));
        Some(cluster)
    }

    /// Waits until every live node sees every master with a replica, and
    /// every replica's link to its master is up. `redis-cli --cluster
    /// create` returns once the slots are assigned; replicas attach, sync
    /// and become known to the other nodes by gossip after it, later on a
    /// loaded machine (a test once found its master without a replica).
    fn wait_until_replicated(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let live = self.live_ports();
            let every_view = live.iter().all(|&p| {
                let nodes = self.cli(p, &["CLUSTER", "NODES"]);
                let lines: Vec<Vec<&str>> = nodes.lines().map(|l| l.split(' ').collect()).collect();
                let masters: Vec<&str> = lines
                    .iter()
                    .filter(|f| f.get(2).is_some_and(|flags| flags.contains("master")))
                    .filter_map(|f| f.first().copied())
                    .collect();
                !masters.is_empty()
                    && masters
                        .iter()
                        .all(|id| lines.iter().any(|f| f.get(3) == Some(id)))
            });
            let links_up = live.iter().all(|&p| {
                let info = self.cli(p, &["INFO", "replication"]);
                !info.contains("role:slave") || info.contains("master_link_status:up")
            });
            if every_view && links_up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replicas were not attached within {timeout:?}:\n{}",
                self.describe()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One cluster for the whole test binary, started on first use; tests
    /// that kill nodes start their own.
    pub fn shared() -> Option<&'static Self> {
        static SHARED: std::sync::OnceLock<Option<RedisCluster>> = std::sync::OnceLock::new();
        SHARED.get_or_init(Self::start).as_ref()
    }

    /// The URL the services take: every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis-cluster://{}", seeds.join(","))
    }

    /// The port of the master serving `key` now.
    pub fn master_of(&self, key: &str) -> u16 {
        let answer = self.cli(self.live_port(), &["CLUSTER", "KEYSLOT", key]);
        let slot: u16 = answer
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT answered {answer:?}"));
        self.masters()
            .into_iter()
            .find(|(_, ranges)| ranges.iter().any(|r| r.contains(&slot)))
            .map(|(port, _)| port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// SIGKILL to the node on `port`: no goodbye, no last write.
    pub fn kill(&mut self, port: u16) {
        let node = self.node(port);
        if let Some(mut p) = self.nodes[node].process.take() {
            p.kill();
        }
    }

    /// Starts the node on `port` again from its cluster file: it rejoins,
    /// as a replica if its slots have moved on.
    pub fn restart(&mut self, port: u16) {
        let node = self.node(port);
        self.spawn(node);
    }

    /// Whether the node on `port` is a replica that has caught up with its
    /// master (`master_link_status:up`, same replication offset).
    pub fn replica_caught_up(&self, port: u16) -> bool {
        let info = self.cli(port, &["INFO", "replication"]);
        let field = |text: &str, name: &str| -> Option<i64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        };
        if !info.contains("master_link_status:up") {
            return false;
        }
        let Some(master_port) = field(&info, "master_port:") else {
            return false;
        };
        let Ok(master_port) = u16::try_from(master_port) else {
            return false;
        };
        let master = self.cli(master_port, &["INFO", "replication"]);
        field(&info, "slave_repl_offset:") == field(&master, "master_repl_offset:")
    }

    /// The replicas of the master on `port`.
    pub fn replicas_of(&self, port: u16) -> Vec<u16> {
        let id = self.cli(port, &["CLUSTER", "MYID"]).trim().to_owned();
        self.cli(self.live_port(), &["CLUSTER", "NODES"])
            .lines()
            .filter(|l| l.split(' ').nth(3) == Some(id.as_str()))
            .filter_map(|l| node_port(l.split(' ').nth(1)?))
            .collect()
    }

    /// Waits until every slot has a live master and every live node says
    /// `cluster_state:ok`.
    pub fn wait_until_serving(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let live: Vec<u16> = self.live_ports();
            let ok = live.iter().all(|&p| {
                let info = self.cli(p, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            });
            let served: usize = self
                .masters()
                .iter()
                .filter(|(p, _)| live.contains(p))
                .flat_map(|(_, ranges)| ranges.iter().map(|r| usize::from(r.end() - r.start()) + 1))
                .sum();
            if ok && served == 16384 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not serve every slot within {timeout:?}:\n{}",
                self.cli(self.live_port(), &["CLUSTER", "NODES"])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis-cli -p PORT ARGS…`'s output (empty when the node is down).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn spawn(&mut self, i: usize) {
        let (port, bus) = (self.nodes[i].port, self.nodes[i].bus);
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-port", &bus.to_string()])
            .arg("--cluster-config-file")
            .arg(self.dir.join(format!("nodes-{port}.conf")))
            .args([
                "--cluster-node-timeout",
                &NODE_TIMEOUT.as_millis().to_string(),
            ])
            // A replica takes over however long its link was down.
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .process_group(i32::try_from(self.group).unwrap_or(0));
        let process = Process::start(&format!("redis-{port}"), cmd);
        if self.group == 0 {
            self.group = process.pid();
        }
        wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}\n{}", process.stdout().join("\n")));
        self.nodes[i].process = Some(process);
    }

    /// Kills the nodes' group and removes their files once this process is
    /// gone, however it ended.
    fn watch(&self) {
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill -9 -{group}; rm -rf '{dir}'",
            parent = std::process::id(),
            group = self.group,
            dir = self.dir.display(),
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
    }

    fn node(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// What each live node says of the cluster and of itself (role,
    /// replication offset, key count) and the end of its log: for a test
    /// failure to say what the cluster was doing.
    pub fn describe(&self) -> String {
        let mut out = self.cli(self.live_port(), &["CLUSTER", "NODES"]);
        for node in self.nodes.iter() {
            let Some(process) = &node.process else {
                out.push_str(&format!("\n== {} (killed)", node.port));
                continue;
            };
            let info = self.cli(node.port, &["INFO", "replication"]);
            let keys = self.cli(node.port, &["DBSIZE"]);
            out.push_str(&format!("\n== {} keys {}", node.port, keys.trim()));
            for line in info.lines().filter(|l| {
                [
                    "role:",
                    "master_link_status:",
                    "master_repl_offset:",
                    "slave_repl_offset:",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            }) {
                out.push_str(&format!("\n  {}", line.trim()));
            }
            let log = process.stdout();
            for line in &log[log.len().saturating_sub(15)..] {
                out.push_str(&format!("\n  | {line}"));
            }
        }
        out
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.process.is_some())
            .map(|n| n.port)
            .collect()
    }

    fn live_port(&self) -> u16 {
        self.live_ports()[0]
    }

    /// Each master's port and slot ranges, as a live node sees them.
    fn masters(&self) -> Vec<(u16, Vec<std::ops::RangeInclusive<u16>>)> {
        self.cli(self.live_port(), &["CLUSTER", "NODES"])
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let flags = fields.get(2)?;
                if !flags.contains("master") || flags.contains("fail") {
                    return None;
                }
                let port = node_port(fields.get(1)?)?;
                let ranges = fields
                    .iter()
                    .skip(8)
                    .filter_map(|r| {
                        let (a, b) = r.split_once('-').unwrap_or((r, r));
                        Some(a.parse().ok()?..=b.parse().ok()?)
                    })
                    .collect();
                Some((port, ranges))
            })
            .collect()
    }
}

/// `127.0.0.1:7000@17000` → 7000.
fn node_port(address: &str) -> Option<u16> {
    address.split('@').next()?.rsplit(':').next()?.parse().ok()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.process.take();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
