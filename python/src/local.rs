//! What `warren.LocalCluster` needs before it starts anything: the settings
//! as a client would resolve them (to name the services it could not reach),
//! and the namespace key, made if missing (its workers accept code, which
//! needs one).
//!
//! These are Rust so that the Python side resolves settings and key files
//! exactly as every warren process does, not by a second reading of the
//! same rules.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use warren_core::signing::{self, SigningError};

use crate::client::load_settings;

/// `(namespace, amqp node URLs, redis URL, key file, store URL)` as
/// `Client(config, **overrides)` would use them, passwords hidden; the key
/// file is the path the `key_file` setting resolves to ("" for `none` or no
/// home directory), the store URL is the setting `store_url` ("" for none).
#[pyfunction]
#[pyo3(signature = (config=None, overrides=Vec::new()))]
pub fn resolved_settings(
    config: Option<PathBuf>,
    overrides: Vec<(String, String)>,
) -> PyResult<(String, Vec<String>, String, String, String)> {
    let s = load_settings(config, &overrides)?;
    let nodes = warren_core::amqp::node_urls(&s.amqp_url)
        .into_iter()
        .map(warren_core::settings::redact_url)
        .collect();
    let key_file = if s.key_file == signing::NO_KEY {
        String::new()
    } else {
        signing::key_file(&s.key_file)
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    Ok((
        s.namespace.clone(),
        nodes,
        warren_core::settings::redact_url(&s.redis_url),
        key_file,
        s.store_url.clone(),
    ))
}

/// The namespace key's file, made (mode 0600) if it does not exist:
/// `(path, key id, made now)`. A `key_file` of `none`, or no home directory
/// for the default one, is a `ValueError` naming the setting.
#[pyfunction]
#[pyo3(signature = (config=None, overrides=Vec::new()))]
pub fn ensure_key(
    config: Option<PathBuf>,
    overrides: Vec<(String, String)>,
) -> PyResult<(String, String, bool)> {
    let s = load_settings(config, &overrides)?;
    if s.key_file == signing::NO_KEY {
        return Err(PyValueError::new_err(
            "a local cluster's workers run functions sent as code, which needs the namespace key, \
             and key_file is \"none\": unset it (or name a file) to let the cluster make one",
        ));
    }
    let path = signing::key_file(&s.key_file).ok_or_else(|| {
        PyValueError::new_err(
            "no home directory for the default key file: set key_file (WARREN_KEY_FILE)",
        )
    })?;
    let shown = path.display().to_string();
    let made = match signing::write_new_key(&path, false) {
        Ok(key) => Some(key.id_hex()),
        // Made by another process meanwhile, or there before: read it.
        Err(SigningError::KeyFile(_)) if path.exists() => None,
        Err(e) => return Err(PyValueError::new_err(e.to_string())),
    };
    let created = made.is_some();
    let id = match made {
        Some(id) => id,
        None => match signing::load(&shown, "") {
            Ok(Some(ring)) => ring.current().id_hex(),
            Ok(None) => return Err(PyValueError::new_err(format!("no key in {shown}"))),
            Err(e) => return Err(PyValueError::new_err(e.to_string())),
        },
    };
    Ok((shown, id, created))
}
