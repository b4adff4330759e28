//! Separate hosts on one machine, for the tests of what crosses a network:
//! each host is a network namespace with its own interface, joined to the
//! machine by a veth pair whose other end sits on a bridge the machine holds.
//!
//! Why a bridge rather than one veth pair per host: the servers (RabbitMQ,
//! Redis and its sentinels) run on the machine and must be known by one
//! address that every host and the machine itself reach alike. A sentinel
//! hands out the primary's address as the replicas saw it; with a bridge that
//! address is the bridge's, which every host routes to.
//!
//! A host is cut off by taking its veth's machine end down (`ip link set ...
//! down`): its processes keep running, their packets go nowhere, exactly as
//! when a switch port dies. Everything is removed on drop, processes left in
//! a namespace included. Needs root (`ip netns add`).

use std::process::Command;

/// Hosts on a bridge of their own, removed on drop.
pub struct Hosts {
    bridge: String,
    /// The machine's address on the bridge (servers listen there).
    gateway: String,
    /// Each host's namespace and the machine end of its veth pair.
    hosts: Vec<(String, String)>,
}

/// Runs `ip ARGS`, panicking with its output if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (apt-get install iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Hosts {
    /// Makes `n` hosts. Names and the subnet (`10.213.<k>.0/24`) come from the
    /// test process's id, so runs side by side do not meet.
    pub fn make(n: usize) -> Self {
        let id = std::process::id();
        let k = id % 250 + 1;
        let bridge = format!("wbr{id}");
        let gateway = format!("10.213.{k}.1");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let mut made = Self {
            bridge: bridge.clone(),
            gateway: gateway.clone(),
            hosts: Vec::new(),
        };
        ip(&["addr", "add", &format!("{gateway}/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 0..n {
            let ns = format!("warren-{id}-h{i}");
            let outside = format!("wv{id}h{i}");
            let inside = format!("wi{id}h{i}");
            ip(&["netns", "add", &ns]);
            made.hosts.push((ns.clone(), outside.clone()));
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ]);
            ip(&["link", "set", &inside, "netns", &ns]);
            ip(&["link", "set", &outside, "master", &bridge]);
            ip(&["link", "set", &outside, "up"]);
            let addr = format!("10.213.{k}.{}/24", i + 2);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &inside]);
            ip(&["-n", &ns, "link", "set", &inside, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        made
    }

    /// The machine's address on the bridge: what servers bind to and every
    /// URL names.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Host `i`'s own address (as servers see its connections come from).
    pub fn address(&self, i: usize) -> String {
        let prefix = self.gateway.rsplit_once('.').map_or("", |(p, _)| p);
        format!("{prefix}.{}", i + 2)
    }

    /// The namespaces' names, for `ip netns exec`.
    pub fn names(&self) -> Vec<String> {
        self.hosts.iter().map(|(ns, _)| ns.clone()).collect()
    }

    /// Cuts host `i` off the network (its link down) or joins it again.
    pub fn set_link(&self, i: usize, up: bool) {
        ip(&[
            "link",
            "set",
            &self.hosts[i].1,
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for (ns, _) in &self.hosts {
            // A process left in a namespace would keep it alive, unnamed.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            // Deleting the namespace deletes its end of the veth, and so both.
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}
