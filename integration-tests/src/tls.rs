//! Certificates and TLS servers of a test's own: a private CA made with
//! `openssl` (Debian's), a Redis that speaks only TLS, and the lines that give
//! a [`crate::PrivateRabbit`] a TLS listener. Nothing here is a stand-in: the
//! servers are the real `redis-server` and `rabbitmq-server`, verifying
//! certificates as they would in production.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A directory of PEM files: `ca.pem` (the CA), `server.pem`/`server.key`
/// (for `localhost` and `127.0.0.1`, signed by the CA), `client.pem`/
/// `client.key` (common name [`Certs::client_name`], signed by the CA) and
/// `other-ca.pem` (a CA that signed nothing here).
pub struct Certs {
    dir: PathBuf,
    client_name: String,
}

fn openssl(dir: &Path, args: &[&str]) {
    crate::run_ok(Command::new("openssl").args(args).current_dir(dir));
}

impl Certs {
    /// Makes a CA and certificates under the temporary directory, for a
    /// client named `client_name`.
    pub fn make(client_name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "warren-tls-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("certificate dir");
        // RabbitMQ runs as user rabbitmq: it must read the server's files.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let (key, pem, subj) = (
                format!("{ca}.key"),
                format!("{ca}.pem"),
                format!("/CN=warren test {ca}"),
            );
            let mut args = vec![
                "req", "-x509", "-days", "2", "-subj", &subj, "-keyout", &key, "-out", &pem,
            ];
            args.extend(ec);
            openssl(&dir, &args);
        }
        let sans = "subjectAltName=DNS:localhost,IP:127.0.0.1";
        std::fs::write(dir.join("server.ext"), format!("{sans}\n")).expect("server.ext");
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")
            .expect("client.ext");
        for (who, subj) in [
            ("server", "/CN=localhost".to_string()),
            ("client", format!("/CN={client_name}")),
        ] {
            let (key, csr, pem, ext) = (
                format!("{who}.key"),
                format!("{who}.csr"),
                format!("{who}.pem"),
                format!("{who}.ext"),
            );
            let mut args = vec!["req", "-new", "-subj", &subj, "-keyout", &key, "-out", &csr];
            args.extend(ec);
            openssl(&dir, &args);
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                    "-out",
                    &pem,
                ],
            );
        }
        for entry in std::fs::read_dir(&dir).expect("certificate dir").flatten() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644));
        }
        Self {
            dir,
            client_name: client_name.to_string(),
        }
    }

    /// The path of one of the files, as text for a setting.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    /// The common name of the client certificate (its RabbitMQ user name
    /// under EXTERNAL login).
    pub fn client_name(&self) -> &str {
        &self.client_name
    }

    /// `rabbitmq.conf` lines for a TLS listener on `port` with these
    /// certificates: peer certificates verified when given, EXTERNAL login
    /// by the certificate's common name offered.
    pub fn rabbit_config(&self, port: u16) -> Vec<String> {
        vec![
            format!("listeners.ssl.default = {port}"),
            format!("ssl_options.cacertfile = {}", self.path("ca.pem")),
            format!("ssl_options.certfile = {}", self.path("server.pem")),
            format!("ssl_options.keyfile = {}", self.path("server.key")),
            "ssl_options.verify = verify_peer".into(),
            "ssl_options.fail_if_no_peer_cert = false".into(),
            "auth_mechanisms.1 = PLAIN".into(),
            "auth_mechanisms.2 = AMQPLAIN".into(),
            "auth_mechanisms.3 = EXTERNAL".into(),
            "ssl_cert_login_from = common_name".into(),
        ]
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis that listens only with TLS (no plain port), on a port of its own.
pub struct TlsRedis {
    port: u16,
    child: Child,
}

impl TlsRedis {
    /// Starts one with `certs`' server certificate; `client_certificates`
    /// makes it refuse clients without one signed by the CA.
    pub fn start(certs: &Certs, client_certificates: bool) -> Self {
        let port = crate::rabbit::free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--tls-port", &port.to_string()])
            .args(["--tls-cert-file", &certs.path("server.pem")])
            .args(["--tls-key-file", &certs.path("server.key")])
            .args(["--tls-ca-cert-file", &certs.path("ca.pem")])
            .args([
                "--tls-auth-clients",
                if client_certificates { "yes" } else { "no" },
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        // Made before the wait, so that a panic kills and reaps it (Drop).
        let redis = Self { port, child };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server with --tls-port {port} did not start (built without TLS?)");
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL (`rediss://127.0.0.1:<port>/`).
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
