//! A Redis Cluster of three primaries with two replicas each, all private
//! processes on free ports, for the tests of warren on a cluster: the primary
//! serving a namespace's slot can be killed, and the cluster promotes one of
//! its replicas within seconds (`cluster-node-timeout` 1000 ms). Two, so
//! that the promoted primary still has a replica to acknowledge `WAIT`
//! (`redis_min_replicas = 1`): with one, every write after the failover
//! would wait, rightly, for a replica that is not there.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::sentinel::{cli, data_node, wait_port};

/// A running Redis Cluster, stopped and removed on drop.
pub struct RedisCluster {
    dir: PathBuf,
    /// Each node's port and process.
    nodes: Vec<(u16, Child)>,
}

/// A port whose cluster bus port (`port + 10000`) is free too.
fn free_node_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = l.local_addr().expect("addr").port();
        if port < 55000 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

impl RedisCluster {
    /// Starts nine nodes on 127.0.0.1 and joins them as three primaries with
    /// two replicas each (`redis-cli --cluster create`), waiting until the
    /// cluster serves every slot and every replica is in sync.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("warren-redis-cluster-{}", free_node_port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut c = Self {
            dir,
            nodes: Vec::new(),
        };
        for _ in 0..9 {
            let port = free_node_port();
            let child = data_node(port, &["127.0.0.1"], &c.dir.join(format!("node-{port}")))
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-node-timeout", "1000"])
                .spawn()
                .expect("redis-server (apt-get install redis-server)");
            wait_port(port);
            c.nodes.push((port, child));
        }
        let addrs: Vec<String> = c
            .nodes
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "2", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        for (port, _) in &c.nodes {
            loop {
                let info = cli(*port, &["cluster", "info"]);
                let role = cli(*port, &["info", "replication"]);
                let synced = role.contains("role:master") || role.contains("master_link_status:up");
                if info.contains("cluster_state:ok") && synced {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {port} did not join: {info}{role}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        c
    }

    /// `redis+cluster://` naming every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The port of the primary serving `slot`, as the first live node says.
    pub fn primary_of(&self, slot: u16) -> Option<u16> {
        self.nodes.iter().find_map(|(p, _)| {
            let out = cli(*p, &["cluster", "nodes"]);
            primary_in_nodes(&out, slot)
        })
    }

    /// `redis-cli -p <port> <args>` on the node at `port`, for checks.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli(port, args)
    }

    /// The ports of the live primaries.
    pub fn primaries(&self) -> Vec<u16> {
        (0..3)
            .map(|i| i * 5462)
            .filter_map(|slot| self.primary_of(slot))
            .collect()
    }

    /// `kill -9` of the primary serving `slot`; returns its port.
    pub fn kill_primary_of(&mut self, slot: u16) -> u16 {
        let port = self.primary_of(slot).expect("a primary serves the slot");
        let i = self
            .nodes
            .iter()
            .position(|(p, _)| *p == port)
            .expect("the primary is one of ours");
        let (_, mut child) = self.nodes.remove(i);
        let _ = child.kill();
        let _ = child.wait();
        port
    }

    /// Waits until a live node names another primary than `old` for `slot`.
    pub fn await_failover(&self, slot: u16, old: u16, within: Duration) -> u16 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(p) = self.primary_of(slot).filter(|p| *p != old) {
                return p;
            }
            assert!(Instant::now() < deadline, "no failover within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The port of the live primary that a `CLUSTER NODES` answer says serves
/// `slot`: lines are `id host:port@bus flags master ping pong epoch state
/// slots...`, with slots as `n` or `a-b`.
fn primary_in_nodes(nodes: &str, slot: u16) -> Option<u16> {
    nodes.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let flags = f.get(2)?;
        if !flags.contains("master") || flags.contains("fail") {
            return None;
        }
        let serves = f.iter().skip(8).any(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            match (a.parse::<u16>(), b.parse::<u16>()) {
                (Ok(a), Ok(b)) => (a..=b).contains(&slot),
                _ => false,
            }
        });
        if !serves {
            return None;
        }
        let addr = f.get(1)?.split('@').next()?;
        addr.rsplit_once(':')?.1.parse().ok()
    })
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, c) in self.nodes.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("Redis Cluster logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_name_the_live_primary_of_a_slot() {
        let out = "\
a 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b 127.0.0.1:7002@17002 master,fail - 0 0 2 connected 5461-10922
c 127.0.0.1:7003@17003 master - 0 0 3 connected 10923-16383
d 127.0.0.1:7004@17004 slave a 0 0 1 connected
";
        assert_eq!(primary_in_nodes(out, 0), Some(7001));
        assert_eq!(primary_in_nodes(out, 6000), None);
        assert_eq!(primary_in_nodes(out, 16383), Some(7003));
    }
}
