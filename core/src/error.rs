//! Errors of the core library.
//!
//! Every variant names what failed and, where it helps, how to fix it: these texts
//! reach users of the CLI verbatim. Each message already contains its cause, so
//! no variant also exposes it as `source()`: a `{:#}` chain would print it twice.

use thiserror::Error;

/// Result with the core [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the shared core.
#[derive(Debug, Error)]
pub enum Error {
    /// The settings could not be loaded or are invalid.
    #[error("invalid settings: {0}")]
    Settings(String),

    /// RabbitMQ could not be reached or refused us.
    #[error("cannot reach RabbitMQ at {url}: {cause} ({})", amqp_hint(&cause.to_string()))]
    AmqpConnect {
        /// The URLs tried (several nodes: each), with passwords hidden.
        url: String,
        /// The underlying error (of the last node tried).
        cause: lapin::Error,
    },

    /// A RabbitMQ operation failed after connecting.
    #[error("RabbitMQ: {0}")]
    Amqp(lapin::Error),

    /// A name RabbitMQ cannot carry (longer than an AMQP short string);
    /// refused before anything is sent, since lapin would panic on it.
    #[error("{0}")]
    AmqpName(String),

    /// The broker refused (nacked) a published message.
    #[error("RabbitMQ refused a message published to {0}")]
    Nacked(String),

    /// No sentinel or cluster node named a Redis primary; `transient` when
    /// every one was merely unreachable (a failover or restart mends that).
    #[error("{message} ({})", no_primary_hint(message))]
    NoPrimary {
        /// Who was asked and what the last one said.
        message: String,
        /// Whether waiting may mend it.
        transient: bool,
    },

    /// Redis could not be reached or refused us.
    #[error("cannot reach Redis at {url}: {cause} ({})", redis_hint(&cause.to_string()))]
    RedisConnect {
        /// The URL tried, with its password hidden.
        url: String,
        /// The underlying error.
        cause: redis::RedisError,
    },

    /// A Redis command failed after connecting.
    #[error("Redis: {0}")]
    Redis(redis::RedisError),

    /// A message or stored record could not be encoded or decoded.
    #[error("malformed data: {0}")]
    Json(serde_json::Error),

    /// A Lua script answered in a shape the Rust side does not expect.
    #[error("unexpected reply from a Redis script: {0}")]
    Script(String),

    /// A user's input that cannot be used as given (the message names it).
    #[error("{0}")]
    Invalid(String),

    /// The object store of big values (setting `store_url`) failed.
    #[error("the object store {url} (setting store_url): {cause}")]
    ObjectStore {
        /// The store's URL.
        url: String,
        /// What the store said.
        cause: object_store::Error,
    },
}

/// What to check when RabbitMQ refused or did not answer, from its error's
/// text: a refused login is not a stopped broker.
pub fn amqp_hint(cause: &str) -> &'static str {
    if let Some(hint) = tls_hint(cause) {
        hint
    } else if amqp_refused(cause) {
        "the user or password in the URL is wrong: check them in WARREN_AMQP_URL (amqp://USER:PASSWORD@HOST:PORT/VHOST)"
    } else if amqp_not_allowed(cause) {
        "the vhost does not exist or the user has no rights to it: check the vhost at the end of WARREN_AMQP_URL (%2f is /) and `rabbitmqctl list_permissions -p VHOST`"
    } else {
        "is it running? start it with broker-config/up.sh, or set WARREN_AMQP_URL"
    }
}

/// Whether RabbitMQ's error `cause` says no node answered (refused, timed
/// out, dropped: what a dying or restarting node looks like), rather than a
/// refused login, vhost or certificate, which no wait mends.
pub fn amqp_unreachable(cause: &str) -> bool {
    tls_hint(cause).is_none() && !amqp_refused(cause) && !amqp_not_allowed(cause)
}

/// Whether RabbitMQ's error `cause` is ACCESS_REFUSED: a refused login, or
/// an operation the user has no rights to. lapin writes the code both as
/// the protocol's `ACCESS-REFUSED` and as RabbitMQ's own `ACCESS_REFUSED`.
pub fn amqp_refused(cause: &str) -> bool {
    cause.contains("ACCESS_REFUSED") || cause.contains("ACCESS-REFUSED")
}

/// Whether RabbitMQ's error `cause` is NOT_ALLOWED: a vhost that does not
/// exist or that the user has no rights to.
fn amqp_not_allowed(cause: &str) -> bool {
    cause.contains("NOT_ALLOWED") || cause.contains("NOT-ALLOWED")
}

/// What to check when no sentinel or cluster node named a primary.
fn no_primary_hint(message: &str) -> &'static str {
    if [
        "NOAUTH",
        "WRONGPASS",
        "AuthenticationFailed",
        "invalid password",
    ]
    .iter()
    .any(|m| message.contains(m))
    {
        "a password was refused: sentinels take redis_sentinel_password (WARREN_REDIS_SENTINEL_PASSWORD), a cluster's nodes the one in WARREN_REDIS_URL"
    } else {
        redis_hint(message)
    }
}

/// What to check when TLS failed: the server runs, and the trust does not.
fn tls_hint(cause: &str) -> Option<&'static str> {
    let cause = cause.to_ascii_lowercase();
    if cause.contains("unknownissuer") || cause.contains("unknown issuer") {
        Some(
            "the server's certificate is not signed by a CA this process trusts: set tls_ca_file (WARREN_TLS_CA_FILE) to the CA that signed it",
        )
    } else if cause.contains("notvalidforname") || cause.contains("not valid for name") {
        Some(
            "the server's certificate does not name the host in the URL: use a host name the certificate lists",
        )
    } else if cause.contains("certificate") || cause.contains("handshake") {
        Some(
            "a TLS failure: check tls_ca_file, and tls_cert_file and tls_key_file if the server asks for a client certificate",
        )
    } else {
        None
    }
}

/// What to check when Redis refused or did not answer, from its error's text.
pub fn redis_hint(cause: &str) -> &'static str {
    if let Some(hint) = tls_hint(cause) {
        hint
    } else if cause.contains("NOAUTH") {
        "Redis wants a password and the URL has none: put it in WARREN_REDIS_URL (redis://:PASSWORD@HOST:PORT/, or redis://USER:PASSWORD@... for an ACL user)"
    } else if cause.contains("WRONGPASS") || cause.contains("invalid password") {
        "the user or password in the URL is wrong: check them in WARREN_REDIS_URL (redis://USER:PASSWORD@HOST:PORT/)"
    } else if cause.contains("NOPERM") {
        "the Redis user lacks rights to this namespace's keys or to Lua scripts: see `warren access --help` and docs/operations.md, A namespace as an access boundary"
    } else {
        "is it running? start it with broker-config/up.sh, or set WARREN_REDIS_URL"
    }
}

impl From<lapin::Error> for Error {
    fn from(e: lapin::Error) -> Self {
        Error::Amqp(e)
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Error::Redis(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_login_is_not_called_a_stopped_server() {
        let refused =
            "protocol error: AMQP soft error: ACCESS-REFUSED: ACCESS_REFUSED - Login was refused";
        assert!(amqp_hint(refused).contains("user or password"));
        assert!(amqp_hint("NOT_ALLOWED - vhost x not found").contains("vhost"));
        assert!(amqp_hint("IO error: Connection refused (os error 111)").contains("is it running"));
        assert!(redis_hint("NOAUTH: Authentication required.").contains("has none"));
        assert!(redis_hint("WRONGPASS: invalid username-password pair").contains("wrong"));
        assert!(redis_hint("Connection refused (os error 111)").contains("is it running"));
        let unknown = "io error: invalid peer certificate: UnknownIssuer";
        assert!(amqp_hint(unknown).contains("tls_ca_file"));
        assert!(redis_hint(unknown).contains("tls_ca_file"));
        let sentinel = "no sentinel named the Redis primary \"m\": redis://h:1: NOAUTH Authentication required.";
        assert!(no_primary_hint(sentinel).contains("redis_sentinel_password"));
        assert!(redis_hint("invalid peer certificate: NotValidForName").contains("host"));
        assert!(amqp_hint("received fatal alert: CertificateRequired").contains("tls_cert_file"));
    }

    #[test]
    fn only_a_broker_that_does_not_answer_is_worth_waiting_for() {
        for down in [
            "IO error: Connection refused (os error 111)",
            "no answer within 3s",
            "IO error: Connection reset by peer (os error 104)",
        ] {
            assert!(amqp_unreachable(down), "{down}");
        }
        for refused in [
            "protocol error: AMQP soft error: ACCESS-REFUSED: ACCESS_REFUSED - Login was refused",
            "NOT_ALLOWED - vhost x not found",
            "io error: invalid peer certificate: UnknownIssuer",
        ] {
            assert!(!amqp_unreachable(refused), "{refused}");
        }
    }
}
