//! A Redis primary with two replicas under three sentinels, all private
//! processes on free ports, for the tests of a Redis failover: the primary
//! can be killed, and the sentinels promote a replica within seconds.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::rabbit::free_port;

/// The name the sentinels know the primary by.
pub const PRIMARY_NAME: &str = "warren-test";

/// Replicated Redis: data nodes and sentinels, stopped on drop.
pub struct ReplicatedRedis {
    dir: PathBuf,
    /// The address every node is known by (and its replicas sync from).
    host: String,
    /// Each data node's port and process (the first starts as primary).
    data: Vec<(u16, Child)>,
    sentinels: Vec<(u16, Child)>,
}

/// `redis-server` for a test's data node on `port`, listening on `bind`,
/// with its data and log in `dir` (made here): append-only, as replicated
/// Redis runs, and replicas' first sync without delay.
pub(crate) fn data_node(port: u16, bind: &[&str], dir: &std::path::Path) -> Command {
    std::fs::create_dir_all(dir).expect("data dir");
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind"])
        .args(bind)
        // Beyond loopback with no password, protected mode refuses even
        // the replicas.
        .args(["--protected-mode", "no"])
        .args(["--appendonly", "yes", "--save", ""])
        .args(["--repl-diskless-sync-delay", "0"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("log"))
        .stdout(Stdio::null());
    cmd
}

pub(crate) fn wait_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing answers on port {port}");
}

pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl ReplicatedRedis {
    /// Starts the primary, two replicas and three sentinels (quorum 2, a
    /// primary silent for 1 s is down) on 127.0.0.1.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1")
    }

    /// The same, every node also listening on `host` and known by it: the
    /// sentinels name the primary by the address its replicas sync from, so
    /// for clients on other hosts (network namespaces) that must be one they
    /// reach, not 127.0.0.1.
    pub fn start_on(host: &str) -> Self {
        Self::start_with(host, None)
    }

    /// [`ReplicatedRedis::start`] with sentinels that want `password`
    /// (`requirepass` in their sentinel.conf).
    pub fn start_with_sentinel_password(password: &str) -> Self {
        Self::start_with("127.0.0.1", Some(password))
    }

    fn start_with(host: &str, sentinel_password: Option<&str>) -> Self {
        let mut bind = vec!["127.0.0.1"];
        if host != "127.0.0.1" {
            bind.push(host);
        }
        let dir = std::env::temp_dir().join(format!("warren-sentinel-{}", free_port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut r = Self {
            dir,
            host: host.to_string(),
            data: Vec::new(),
            sentinels: Vec::new(),
        };
        let primary = free_port();
        for i in 0..3 {
            let port = if i == 0 { primary } else { free_port() };
            let mut cmd = data_node(port, &bind, &r.dir.join(format!("data-{port}")));
            if i > 0 {
                cmd.args(["--replicaof", host, &primary.to_string()]);
            }
            let child = cmd
                .spawn()
                .expect("redis-server (apt-get install redis-server)");
            wait_port(port);
            r.data.push((port, child));
        }
        for _ in 0..3 {
            let port = free_port();
            let conf = r.dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind {}\nprotected-mode no\n\
                     sentinel monitor {PRIMARY_NAME} {host} {primary} 2\n\
                     sentinel down-after-milliseconds {PRIMARY_NAME} 1000\n\
                     sentinel failover-timeout {PRIMARY_NAME} 5000\n\
                     logfile {}\n{}",
                    bind.join(" "),
                    r.dir.join(format!("sentinel-{port}.log")).display(),
                    sentinel_password
                        .map(|p| format!("requirepass {p}\n"))
                        .unwrap_or_default()
                ),
            )
            .expect("sentinel.conf");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server --sentinel");
            wait_port(port);
            r.sentinels.push((port, child));
        }
        // Replicas in sync before anything counts on them (a replica that
        // has not finished its first sync cannot acknowledge a WAIT).
        let deadline = Instant::now() + Duration::from_secs(30);
        for (port, _) in &r.data[1..] {
            while !cli(*port, &["info", "replication"]).contains("master_link_status:up") {
                assert!(Instant::now() < deadline, "replica {port} did not sync");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        r
    }

    /// `redis+sentinel://` naming the three sentinels.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(p, _)| format!("{}:{p}", self.host))
            .collect();
        format!("redis+sentinel://{}/{PRIMARY_NAME}", hosts.join(","))
    }

    /// The primary's port, as the first sentinel answering says.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|(p, _)| {
            let out = cli(*p, &["sentinel", "get-master-addr-by-name", PRIMARY_NAME]);
            out.lines().nth(1).and_then(|l| l.trim().parse().ok())
        })
    }

    /// `kill -9` of the current primary; returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().expect("a sentinel names the primary");
        let (_, child) = self
            .data
            .iter_mut()
            .find(|(p, _)| *p == port)
            .expect("the primary is one of ours");
        let _ = child.kill();
        let _ = child.wait();
        port
    }

    /// Waits until the sentinels name another primary than `old`.
    pub fn await_failover(&self, old: u16, within: Duration) -> u16 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(p) = self.primary_port().filter(|p| *p != old) {
                return p;
            }
            assert!(Instant::now() < deadline, "no failover within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ReplicatedRedis {
    fn drop(&mut self) {
        for (_, c) in self.sentinels.iter_mut().chain(self.data.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A failed test leaves the logs of every node to read.
        if std::thread::panicking() {
            eprintln!("Redis and sentinel logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
