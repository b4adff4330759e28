//! Task keys, the way dask makes them.
//!
//! With `pure=True` (the default) a key is `<func>-<hash of func and args>`, so
//! submitting the same call twice yields the same future and the work is done once.
//! With `pure=False` the hash part is random. The hash covers the arguments as
//! canonical JSON (object keys sorted), with futures as their keys, so a call on
//! the same futures also deduplicates.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The deterministic key of `func(args...)`.
pub fn pure_key(func: &str, args: &[Value]) -> String {
    let mut h = Sha256::new();
    h.update(func.as_bytes());
    h.update([0]);
    // serde_json without `preserve_order` keeps object keys sorted: canonical.
    let canonical = serde_json::to_vec(args).unwrap_or_default();
    h.update(&canonical);
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{func}-{hex}")
}

/// The deterministic key of `func(args...)`, named `<name>-<hash>`: a
/// program task is named for its program, not for `warren.cmd`.
pub fn pure_key_as(name: &str, func: &str, args: &[Value]) -> String {
    let full = pure_key(func, args);
    let hash = full.rsplit('-').next().unwrap_or(&full);
    format!("{name}-{hash}")
}

/// A fresh random key for `func`, for impure tasks.
pub fn random_key(func: &str) -> String {
    format!("{func}-{}", uuid::Uuid::new_v4().simple())
}

/// Checks a user-chosen key: printable, no spaces, at most 250 bytes.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 250 {
        return Err(format!(
            "key {} must be 1-250 bytes long, not {}",
            shown(key),
            key.len()
        ));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "key {} must not contain spaces or control characters",
            shown(key)
        ));
    }
    Ok(())
}

/// A key as an error message shows it: quoted, and cut after 60 characters,
/// so a 10 KB key does not flood the terminal.
pub fn shown(key: &str) -> String {
    if key.chars().count() <= 60 {
        format!("{key:?}")
    } else {
        let head: String = key.chars().take(60).collect();
        format!("{head:?}... ({} bytes)", key.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pure_keys_are_deterministic_and_depend_on_args() {
        let a = pure_key("inc", &[json!(1)]);
        assert_eq!(a, pure_key("inc", &[json!(1)]));
        assert_ne!(a, pure_key("inc", &[json!(2)]));
        assert_ne!(a, pure_key("dec", &[json!(1)]));
        assert!(a.starts_with("inc-") && a.len() == "inc-".len() + 32);
        // map key order does not matter
        assert_eq!(
            pure_key("f", &[json!({"a": 1, "b": 2})]),
            pure_key(
                "f",
                &[serde_json::from_str::<Value>(r#"{"b":2,"a":1}"#).unwrap()]
            )
        );
    }

    #[test]
    fn random_keys_differ_and_bad_keys_are_named() {
        assert_ne!(random_key("f"), random_key("f"));
        assert!(validate_key("has space").unwrap_err().contains("has space"));
        assert!(validate_key("ok-key").is_ok());
        let e = validate_key(&"x".repeat(10_000)).unwrap_err();
        assert!(e.len() < 200 && e.contains("not 10000"), "{e}");
    }
}
