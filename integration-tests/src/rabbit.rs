//! A private RabbitMQ node for tests that change the broker itself: a lower
//! message size limit, a memory alarm. The shared broker on 5672 serves every
//! other test at once, so nothing may be changed there.
//!
//! The node runs from Debian's `rabbitmq-server` with its own name, ports,
//! data and log directory under the temporary directory, no plugins, and the
//! configuration lines a test gives; it is stopped and removed on drop.
//! Starting one takes about 7 s. [`PrivateRabbit::cluster`] joins several
//! into one RabbitMQ cluster, for the tests of quorum queues across nodes.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A RabbitMQ node of its own on 127.0.0.1.
pub struct PrivateRabbit {
    node: String,
    port: u16,
    dir: PathBuf,
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl PrivateRabbit {
    /// Starts a node with these `rabbitmq.conf` lines (e.g.
    /// `max_message_size = 1500000`) and waits until it takes connections.
    pub fn start(config: &[&str]) -> Self {
        Self::start_with_plugins(config, &[])
    }

    /// [`PrivateRabbit::start`] with these plugins enabled (e.g.
    /// `rabbitmq_auth_mechanism_ssl`).
    pub fn start_with_plugins(config: &[&str], plugins: &[&str]) -> Self {
        let r = Self::spawn(config, plugins);
        r.await_started();
        r
    }

    /// `n` nodes joined into one RabbitMQ cluster (started side by side,
    /// then the others join the first), each with these configuration lines.
    pub fn cluster(n: usize, config: &[&str]) -> Vec<Self> {
        let nodes: Vec<Self> = (0..n).map(|_| Self::spawn(config, &[])).collect();
        for node in &nodes {
            node.await_started();
        }
        for node in &nodes[1..] {
            node.ctl(&["stop_app"]);
            node.ctl(&["join_cluster", &nodes[0].node]);
            node.ctl(&["start_app"]);
        }
        nodes
    }

    /// Starts the node without waiting for it.
    fn spawn(config: &[&str], plugins: &[&str]) -> Self {
        let port = free_port();
        let dist = free_port();
        let node = format!("warren-t{port}@localhost");
        let dir = std::env::temp_dir().join(format!("warren-rabbit-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("node dir");
        // Debian's scripts run the node as user rabbitmq, which must write here.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let mut conf = format!("listeners.tcp.default = {port}\n");
        for line in config {
            conf.push_str(line);
            conf.push('\n');
        }
        std::fs::write(dir.join("rabbit.conf"), conf).expect("rabbit.conf");
        std::fs::write(dir.join("plugins"), format!("[{}].\n", plugins.join(",")))
            .expect("plugins file");
        for f in ["rabbit.conf", "plugins"] {
            let _ = std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o666));
        }
        let r = Self { node, port, dir };
        let out = r
            .command("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_CONFIG_FILE", r.dir.join("rabbit"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", r.dir.join("plugins"))
            .output()
            .expect("rabbitmq-server (apt-get install rabbitmq-server)");
        assert!(out.status.success(), "rabbitmq-server: {}", text(&out));
        r
    }

    fn await_started(&self) {
        let pid = self.dir.join("pid");
        let out = self.ctl_output(&["wait", &pid.to_string_lossy(), "--timeout", "90"]);
        assert!(
            out.status.success(),
            "node {} did not start: {} (logs in {})",
            self.node,
            text(&out),
            self.dir.join("log").display()
        );
    }

    /// The node's Erlang name (`warren-t<port>@localhost`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Kills the node at once (`kill -9` of its Erlang VM), as a crash would.
    pub fn kill(&self) {
        let pid = std::fs::read_to_string(self.dir.join("pid")).expect("the node's pid file");
        let status = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -9 {}", pid.trim());
    }

    /// `rabbitmq-server`'s or `rabbitmqctl`'s command for this node.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"));
        cmd
    }

    fn ctl_output(&self, args: &[&str]) -> Output {
        self.command("rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .output()
            .expect("rabbitmqctl")
    }

    /// Runs `rabbitmqctl -n <node> ARGS`, panicking with its output if it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.ctl_output(args);
        assert!(out.status.success(), "rabbitmqctl {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The URL clients, schedulers and workers connect with.
    pub fn amqp_url(&self) -> String {
        self.amqp_url_at("127.0.0.1")
    }

    /// The URL for processes that reach the node at `host` (the node listens
    /// on every address; user guest beyond loopback needs the configuration
    /// line `loopback_users.guest = false`).
    pub fn amqp_url_at(&self, host: &str) -> String {
        format!("amqp://guest:guest@{host}:{}/%2f", self.port)
    }

    /// The node leading quorum queue `queue`, as this node reports it:
    /// its index in `nodes`.
    pub fn leader_of(&self, nodes: &[PrivateRabbit], queue: &str) -> Option<usize> {
        let out = self.ctl(&["list_queues", "-q", "--no-table-headers", "name", "leader"]);
        let leader = out.lines().find_map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next() == Some(queue)).then(|| cols.next().unwrap_or("").to_string())
        })?;
        nodes.iter().position(|n| n.node() == leader)
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let pid = self.dir.join("pid");
        let _ = self.ctl_output(&["stop", &pid.to_string_lossy()]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
