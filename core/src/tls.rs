//! TLS to RabbitMQ and Redis: one CA, one client certificate, both servers.
//!
//! Connections are encrypted by their URL's scheme (`amqps://`, `rediss://`,
//! `rediss+sentinel://`, `rediss+cluster://`), and always verify the server's
//! certificate and host name. These settings say what to trust and who this
//! process is:
//!
//! - `tls_ca_file`: the PEM certificates of the CA that signed the servers'
//!   certificates (a private CA); empty trusts the system's store.
//! - `tls_cert_file` and `tls_key_file`: this process's own certificate and
//!   key (PEM), for servers that ask for one (RabbitMQ `verify_peer`, Redis
//!   `tls-auth-clients yes`). With a certificate and no user in an `amqps://`
//!   URL, RabbitMQ's EXTERNAL login is used: the certificate is the identity
//!   (RabbitMQ's `rabbitmq_auth_mechanism_ssl` plugin).
//!
//! The files are read and parsed when a connection is made, so a bad file is
//! named at start-up, and a certificate renewed on disk is used at the next
//! reconnect. Why one set for both servers: an operator's private CA signs
//! both, and a per-server pair of settings would double what can be wrong.

use std::path::Path;
use std::sync::Once;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};
use crate::settings::Settings;

/// The PEM files of [`Settings::tls_ca_file`], [`Settings::tls_cert_file`]
/// and [`Settings::tls_key_file`], read and checked.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tls {
    ca: Option<Vec<u8>>,
    identity: Option<Identity>,
}

/// A client certificate chain and its key, both PEM.
#[derive(Clone, PartialEq, Eq)]
struct Identity {
    cert: Vec<u8>,
    key: Vec<u8>,
}

// Never print a key, not even in a debug log line.
impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca.as_ref().map(|_| "<pem>"))
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl Tls {
    /// Reads the files the settings name (none named: the system's trust
    /// store and no client certificate).
    pub fn load(settings: &Settings) -> Result<Self> {
        let read = |setting: &str, path: &str| -> Result<Option<Vec<u8>>> {
            if path.is_empty() {
                return Ok(None);
            }
            std::fs::read(Path::new(path))
                .map(Some)
                .map_err(|e| Error::Settings(format!("{setting} {path}: cannot read it: {e}")))
        };
        let ca = read("tls_ca_file", &settings.tls_ca_file)?;
        let cert = read("tls_cert_file", &settings.tls_cert_file)?;
        let key = read("tls_key_file", &settings.tls_key_file)?;
        Self::from_pem(
            ca,
            cert,
            key,
            [
                settings.tls_ca_file.as_str(),
                settings.tls_cert_file.as_str(),
                settings.tls_key_file.as_str(),
            ],
        )
    }

    /// Checks PEM contents (pure): `names` are the three files' paths, for
    /// the errors.
    pub fn from_pem(
        ca: Option<Vec<u8>>,
        cert: Option<Vec<u8>>,
        key: Option<Vec<u8>>,
        names: [&str; 3],
    ) -> Result<Self> {
        let [ca_name, cert_name, key_name] = names;
        if let Some(pem) = &ca {
            certificates("tls_ca_file", ca_name, pem)?;
        }
        let identity = match (cert, key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::Settings(format!(
                    "tls_cert_file {cert_name} needs its key: set tls_key_file too"
                )));
            }
            (None, Some(_)) => {
                return Err(Error::Settings(format!(
                    "tls_key_file {key_name} needs its certificate: set tls_cert_file too"
                )));
            }
            (Some(cert), Some(key)) => {
                certificates("tls_cert_file", cert_name, &cert)?;
                PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                    Error::Settings(format!(
                        "tls_key_file {key_name}: no PEM private key in it ({e})"
                    ))
                })?;
                Some(Identity { cert, key })
            }
        };
        Ok(Self { ca, identity })
    }

    /// Whether a client certificate is configured.
    pub fn has_client_certificate(&self) -> bool {
        self.identity.is_some()
    }

    /// The TLS configuration of an `amqps://` connection.
    pub fn amqp(&self) -> OwnedTLSConfig {
        OwnedTLSConfig {
            identity: self.identity.as_ref().map(|i| OwnedIdentity::PKCS8 {
                pem: i.cert.clone(),
                key: i.key.clone(),
            }),
            // Checked to be PEM certificates in `from_pem`.
            cert_chain: self
                .ca
                .as_ref()
                .map(|pem| String::from_utf8_lossy(pem).into_owned()),
        }
    }

    /// `url` as this process logs in with: with a client certificate, an
    /// `amqps://` URL that names no user logs in with EXTERNAL (the
    /// certificate is the identity) rather than as `guest`.
    pub fn amqp_url(&self, url: &str) -> String {
        if self.identity.is_none() {
            return url.to_string();
        }
        external_login(url)
    }

    /// A Redis client for `url`: a `rediss://` one trusts the CA and shows
    /// the client certificate, if set.
    pub fn redis_client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        if !url.starts_with("rediss://") || (self.ca.is_none() && self.identity.is_none()) {
            return redis::Client::open(url);
        }
        install_crypto_provider();
        redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: self.identity.as_ref().map(|i| redis::ClientTlsConfig {
                    client_cert: i.cert.clone(),
                    client_key: i.key.clone(),
                }),
                root_cert: self.ca.clone(),
            },
        )
    }
}

/// `url` with `auth_mechanism=external` when it is `amqps://`, names no
/// user and no mechanism (pure).
pub fn external_login(url: &str) -> String {
    let Some(rest) = url.strip_prefix("amqps://") else {
        return url.to_string();
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let query = url.split_once('?').map_or("", |(_, q)| q);
    if authority.contains('@') || query.split('&').any(|p| p.starts_with("auth_mechanism=")) {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}auth_mechanism=external")
}

/// Checks that `pem` holds at least one certificate and nothing malformed.
fn certificates(setting: &str, path: &str, pem: &[u8]) -> Result<()> {
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| {
            Error::Settings(format!("{setting} {path}: a malformed PEM block ({e})"))
        })?;
        n += 1;
    }
    if n == 0 {
        return Err(Error::Settings(format!(
            "{setting} {path}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(())
}

/// The `redis` crate builds its TLS configuration with rustls's process-wide
/// provider, and two are compiled in (ring for RabbitMQ, aws-lc-rs for the
/// object store's HTTPS), so rustls cannot choose one itself: ring, once.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err: another part of the process installed one first, which serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    // A throwaway self-signed certificate and its key, made for this test
    // with `openssl req -x509 -newkey ec` and used nowhere else.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBizCCATGgAwIBAgIUCj97xGvEYDn2yMijTt3uYdsBuMswCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQd2FycmVuLXVuaXQtdGVzdDAeFw0yNjEyMDYxOTU4MzFaFw0z
NjEyMDMxOTU4MzFaMBsxGTAXBgNVBAMMEHdhcnJlbi11bml0LXRlc3QwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAREDzaIUHKX7cr27qR1wV9iKmjJZ58CqDC48Z0e
673VxFZDhcFxixshhFmF+LTs2Jhetsn8eDLCSPxDgecCY1kpo1MwUTAdBgNVHQ4E
FgQUzoLnig1tPD1xMGcG/qBlKSpyBR4wHwYDVR0jBBgwFoAUzoLnig1tPD1xMGcG
/qBlKSpyBR4wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiApn4CM
DdT/G9JFK7464zd18Ji+SqcXxvRhoPZzUNRYEQIhAKKzhhSlMSuh/qi8aTjTgqh4
lfxGdQsUGuMu9Juyz8Um
-----END CERTIFICATE-----
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFNtLvH0j7rV9Lcgp
2DLHZsGuDyaH7ud5yWcPUHm4WAWhRANCAAREDzaIUHKX7cr27qR1wV9iKmjJZ58C
qDC48Z0e673VxFZDhcFxixshhFmF+LTs2Jhetsn8eDLCSPxDgecCY1kp
-----END PRIVATE KEY-----
";

    fn pem(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    #[test]
    fn nothing_set_is_no_tls_configuration() {
        let t = Tls::from_pem(None, None, None, ["", "", ""]).unwrap();
        assert_eq!(t, Tls::default());
        assert!(!t.has_client_certificate());
        let amqp = t.amqp();
        assert!(amqp.identity.is_none() && amqp.cert_chain.is_none());
        assert_eq!(t.amqp_url("amqps://h/%2f"), "amqps://h/%2f");
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let t = Tls::from_pem(pem(CERT), None, None, ["ca.pem", "", ""]).unwrap();
        assert_eq!(t.amqp().cert_chain.as_deref(), Some(CERT));
        let e = Tls::from_pem(pem("hello"), None, None, ["/x/ca.pem", "", ""])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls_ca_file /x/ca.pem: no PEM certificate"),
            "{e}"
        );
        let e = Tls::from_pem(pem(KEY), None, None, ["/x/ca.pem", "", ""])
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls_ca_file /x/ca.pem"), "{e}");
    }

    #[test]
    fn a_certificate_needs_its_key_and_the_key_its_certificate() {
        let e = Tls::from_pem(None, pem(CERT), None, ["", "c.pem", ""])
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls_cert_file c.pem needs its key"), "{e}");
        let e = Tls::from_pem(None, None, pem(KEY), ["", "", "k.pem"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls_key_file k.pem needs its certificate"),
            "{e}"
        );
        let e = Tls::from_pem(None, pem(CERT), pem(CERT), ["", "c.pem", "k.pem"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls_key_file k.pem: no PEM private key"), "{e}");
        let t = Tls::from_pem(None, pem(CERT), pem(KEY), ["", "c.pem", "k.pem"]).unwrap();
        assert!(t.has_client_certificate());
        assert!(matches!(
            t.amqp().identity,
            Some(OwnedIdentity::PKCS8 { .. })
        ));
        // The key never reaches a log line.
        assert!(!format!("{t:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_certificate_and_no_user_logs_in_with_external() {
        assert_eq!(
            external_login("amqps://h:5671/%2f"),
            "amqps://h:5671/%2f?auth_mechanism=external"
        );
        assert_eq!(
            external_login("amqps://h/v?heartbeat=5"),
            "amqps://h/v?heartbeat=5&auth_mechanism=external"
        );
        for same in [
            "amqps://u:p@h/v",
            "amqps://h/v?auth_mechanism=plain",
            "amqp://h/v",
        ] {
            assert_eq!(external_login(same), same);
        }
        let t = Tls::from_pem(None, pem(CERT), pem(KEY), ["", "c", "k"]).unwrap();
        assert_eq!(
            t.amqp_url("amqps://h/"),
            "amqps://h/?auth_mechanism=external"
        );
    }
}
