//! Keeping the worker's credentials from the programs it runs.
//!
//! A program task runs as the worker's user (unless `--run-as`), and any
//! process of that user may read `/proc/<worker>/environ`: the environment
//! the worker started with, `WARREN_AMQP_URL` and `WARREN_REDIS_URL` with
//! their passwords. A program's own environment is built from nothing
//! (`command.rs`), but `$PPID` is one `cat` away. So once its settings are
//! loaded (they live in the worker's memory from then on), the worker
//! overwrites those values where they are stored, in the block of memory
//! `/proc` reads: the password becomes `***`. The worker then checks what
//! `/proc/self/environ` shows and says so if a password is still there.
//!
//! The S3 store's secret (`WARREN_S3_SECRET_ACCESS_KEY`, or the standard
//! `AWS_SECRET_ACCESS_KEY` it falls back to) is a whole value, not a URL's
//! part: stars cover all of it.
//!
//! This hides what a program could read without effort; a program running
//! as the worker's user can still read the worker's files (`warren.toml`)
//! and, with ptrace rights, its memory. `--run-as USER` is the boundary for
//! that: programs then run as another user.

use std::ffi::CString;

use warren_core::settings::redact_url;

/// Variables whose whole value is a secret. (`AWS_SESSION_TOKEN` stays:
/// the S3 client reads it when it connects, after this runs.)
const SECRET_VARIABLES: [&str; 3] = [
    "WARREN_S3_SECRET_ACCESS_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "WARREN_REDIS_SENTINEL_PASSWORD",
];

/// Overwrites, in this process's environment block, the password of every
/// `WARREN_*` variable that holds a URL, and the whole value of each of
/// [`SECRET_VARIABLES`]. Returns the names scrubbed, and the names whose
/// secret `/proc/self/environ` still shows (empty if none).
pub fn scrub_environment() -> (Vec<String>, Vec<String>) {
    let mut scrubbed = Vec::new();
    // (name, what `/proc/self/environ` would show of the secret)
    let mut secrets = Vec::new();
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        let whole = SECRET_VARIABLES.contains(&name);
        if !whole && (!name.starts_with("WARREN_") || !value.contains("://")) {
            continue;
        }
        let hidden = if whole {
            "*".repeat(value.len())
        } else {
            hide_passwords(value)
        };
        if hidden == value {
            continue;
        }
        if overwrite(name, value, &hidden) {
            scrubbed.push(name.to_string());
            if whole {
                secrets.push((name.to_string(), format!("{name}={value}")));
            } else {
                secrets.extend(
                    passwords(value)
                        .into_iter()
                        .map(|p| (name.to_string(), format!(":{p}@"))),
                );
            }
        }
    }
    let shown = std::fs::read("/proc/self/environ").unwrap_or_default();
    let shown = String::from_utf8_lossy(&shown);
    let mut leaked: Vec<String> = secrets
        .into_iter()
        .filter(|(_, p)| shown.contains(p.as_str()))
        .map(|(n, _)| n)
        .collect();
    leaked.dedup();
    (scrubbed, leaked)
}

/// `value` (one URL, or several separated by commas) with each password
/// replaced by `***`, never longer than `value`: it is written over it.
fn hide_passwords(value: &str) -> String {
    let hidden: Vec<String> = value.split(',').map(redact_url).collect();
    let hidden = hidden.join(",");
    if hidden.len() <= value.len() {
        hidden
    } else {
        // A password shorter than `***`: stars over the whole value.
        "*".repeat(value.len())
    }
}

/// The passwords of the URLs in `value`.
fn passwords(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter_map(|url| {
            let rest = url.split_once("://")?.1;
            let authority = rest.split('/').next()?;
            let userinfo = authority.rsplit_once('@')?.0;
            let password = userinfo.split_once(':')?.1;
            (!password.is_empty()).then(|| password.to_string())
        })
        .collect()
}

/// Writes `hidden` (no longer than `value`) over variable `name`'s value in
/// place, padding with NULs. False if the variable's value is not `value`
/// (changed meanwhile) or cannot be found.
fn overwrite(name: &str, value: &str, hidden: &str) -> bool {
    let Ok(cname) = CString::new(name) else {
        return false;
    };
    // SAFETY: getenv returns a pointer to the value inside the environment
    // entry (the block the kernel gave the process, unless something set the
    // variable since), valid for `value.len()` bytes plus its NUL, and
    // writable (the initial environment is on the stack). The worker calls
    // this at start, before it starts threads that read the environment.
    unsafe {
        let at = libc::getenv(cname.as_ptr());
        if at.is_null() {
            return false;
        }
        let current = std::slice::from_raw_parts(at.cast::<u8>(), value.len());
        if current != value.as_bytes() || hidden.len() > value.len() {
            return false;
        }
        let target = std::slice::from_raw_parts_mut(at.cast::<u8>(), value.len());
        target[..hidden.len()].copy_from_slice(hidden.as_bytes());
        target[hidden.len()..].fill(0);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_and_never_lengthen_the_value() {
        assert_eq!(
            hide_passwords("amqp://guest:secret@h:5672/%2f"),
            "amqp://guest:***@h:5672/%2f"
        );
        assert_eq!(
            hide_passwords("amqp://u:longpass@a/%2f,amqp://u:longpass@b/%2f"),
            "amqp://u:***@a/%2f,amqp://u:***@b/%2f"
        );
        assert_eq!(hide_passwords("redis://:pw@h/"), "*".repeat(14));
        assert_eq!(hide_passwords("redis://h:6379/"), "redis://h:6379/");
        assert_eq!(
            passwords("amqp://u:p1@a/,redis://:p2@b/,redis://c/"),
            ["p1", "p2"]
        );
    }
}
