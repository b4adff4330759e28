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
    #[error(
        "cannot reach RabbitMQ at {url}: {cause} (is it running? start it with broker-config/up.sh, or set WARREN_AMQP_URL)"
    )]
    AmqpConnect {
        /// The URL tried, with its password hidden.
        url: String,
        /// The underlying error.
        cause: lapin::Error,
    },

    /// A RabbitMQ operation failed after connecting.
    #[error("RabbitMQ: {0}")]
    Amqp(lapin::Error),

    /// The broker refused (nacked) a published message.
    #[error("RabbitMQ refused a message published to {0}")]
    Nacked(String),

    /// Redis could not be reached or refused us.
    #[error(
        "cannot reach Redis at {url}: {cause} (is it running? start it with broker-config/up.sh, or set WARREN_REDIS_URL)"
    )]
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
