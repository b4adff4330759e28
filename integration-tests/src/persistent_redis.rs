//! A throwaway Redis with append-only persistence, for the suites that
//! restart Redis mid-run and expect nothing lost (the machine's Redis on 6379
//! keeps nothing on disk, and serves every other test at once).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A throwaway Redis with append-only persistence.
pub struct PersistentRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PersistentRedis {
    /// Starts one on a port of its own (6390 + pid % 500).
    pub fn start() -> Self {
        let port = 6390 + (std::process::id() % 500) as u16;
        let dir = std::env::temp_dir().join(format!("warren-chaos-redis-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut r = Self {
            port,
            dir,
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A clean restart: SHUTDOWN (which syncs the append-only file), then start.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// SHUTDOWN (syncing the append-only file); [`PersistentRedis::resume`] starts it again.
    pub fn stop(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown"])
            .output();
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn resume(&mut self) {
        self.spawn();
    }
}

impl Drop for PersistentRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
