//! The namespace key, and the MACs made with it.
//!
//! A worker must not run code, or unpickle a value, from whoever can reach
//! the broker or Redis: dask's pickled functions are remote code execution for
//! anyone on its port, and Celery turned pickle off by default for that
//! reason. warren keeps the guarantee and lifts the restriction with one
//! secret per namespace (`warren key new`): what a key holder signs, a
//! process that holds the key and was told to accept it may load; nothing
//! else is ever deserialised as code.
//!
//! - A [`Key`] is 32 random bytes; its id (the first 8 bytes of its SHA-256)
//!   says which key signed something without revealing it.
//! - A MAC is keyed BLAKE3 under a subkey per purpose (`code`, `args`,
//!   `result`, ...), derived from the key with BLAKE3's `derive_key`, so a
//!   signed result cannot be replayed as a function to run. The signed parts
//!   are length-prefixed, so no two different sequences of parts sign alike.
//!   Why BLAKE3 and not HMAC-SHA256 (the first design): a value of 1 MiB is
//!   MACed when it is sealed and again wherever it is opened, and on the
//!   machines here SHA-256 ran at 0.98 ms per MiB and BLAKE3 at 0.29; keyed
//!   BLAKE3 is a PRF by design, so it is a MAC without HMAC's two passes.
//! - A [`Keyring`] signs with the current key and verifies with it or a
//!   previous one (rotation: `previous_key_file`).
//!
//! Everything here is pure (no I/O but reading and writing the key file),
//! and tested with fixed vectors.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The context of every subkey's derivation (BLAKE3 `derive_key`): a new
/// context would be a new family of MACs.
const SUBKEY_CONTEXT: &str = "warren 2026-12 namespace key: MAC subkey per purpose";

/// The text a key file starts with, then the key in hex.
const FILE_PREFIX: &str = "warren-key-v1:";

/// What signing or verifying can say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// The key file is missing, unreadable, or not a warren key.
    #[error("{0}")]
    KeyFile(String),
    /// Nothing signed it, and the receiver requires a signature.
    #[error(
        "it is not signed, and only signed {0} is accepted: sign it with the namespace key (warren key new; setting key_file)"
    )]
    Unsigned(String),
    /// Signed with a key this process does not hold.
    #[error(
        "it is signed with key {found}, which this process does not hold (it holds {held}): give both sides the same key file (setting key_file)"
    )]
    UnknownKey {
        /// The id the signature names.
        found: String,
        /// The ids this process holds.
        held: String,
    },
    /// The MAC does not match: the bytes were changed, or signed for another purpose.
    #[error(
        "its signature does not match: it was changed after signing, or signed for another purpose than {0}"
    )]
    BadSignature(String),
}

/// A namespace key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    secret: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id_hex())
    }
}

impl Key {
    /// A new random key.
    pub fn generate() -> Result<Self, SigningError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| SigningError::KeyFile(format!("no randomness for a new key: {e}")))?;
        Ok(Self { secret })
    }

    /// A key from its 32 bytes (tests and vectors).
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// The key as a key file holds it: `warren-key-v1:<64 hex digits>`.
    pub fn to_text(&self) -> String {
        format!("{FILE_PREFIX}{}\n", hex(&self.secret))
    }

    /// Reads a key from a key file's text.
    pub fn from_text(text: &str) -> Result<Self, SigningError> {
        let bad = || {
            SigningError::KeyFile(format!(
                "not a warren key (expected {FILE_PREFIX} and 64 hex digits; make one with `warren key new`)"
            ))
        };
        let digits = text.trim().strip_prefix(FILE_PREFIX).ok_or_else(bad)?;
        if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut secret = [0u8; 32];
        for (i, byte) in secret.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self { secret })
    }

    /// The key's id: the first 8 bytes of its SHA-256.
    pub fn id(&self) -> [u8; 8] {
        let digest = Sha256::digest(self.secret);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        id
    }

    /// The id in hex, as messages name a key.
    pub fn id_hex(&self) -> String {
        hex(&self.id())
    }

    /// The MAC of `parts` for `purpose`.
    pub fn mac(&self, purpose: &str, parts: &[&[u8]]) -> [u8; 32] {
        *self.hasher(purpose, parts).finalize().as_bytes()
    }

    fn hasher(&self, purpose: &str, parts: &[&[u8]]) -> blake3::Hasher {
        // derive_key(CONTEXT, secret || purpose), streamed: no buffer to
        // allocate per MAC.
        let subkey = blake3::Hasher::new_derive_key(SUBKEY_CONTEXT)
            .update(&self.secret)
            .update(purpose.as_bytes())
            .finalize();
        let mut m = blake3::Hasher::new_keyed(subkey.as_bytes());
        for p in parts {
            m.update(&(p.len() as u64).to_le_bytes());
            m.update(p);
        }
        m
    }

    fn verify(&self, purpose: &str, parts: &[&[u8]], mac: &[u8]) -> bool {
        // `blake3::Hash`'s comparison with bytes takes constant time.
        self.hasher(purpose, parts).finalize() == *mac
    }
}

/// The keys a process holds: the current one signs, it or the previous one
/// verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    current: Key,
    previous: Option<Key>,
}

impl Keyring {
    /// A keyring of `current`, accepting `previous` too while keys rotate.
    pub fn new(current: Key, previous: Option<Key>) -> Self {
        Self { current, previous }
    }

    /// The key that signs.
    pub fn current(&self) -> &Key {
        &self.current
    }

    /// Signs `parts` for `purpose`: the signing key's id and the MAC.
    pub fn sign(&self, purpose: &str, parts: &[&[u8]]) -> ([u8; 8], [u8; 32]) {
        (self.current.id(), self.current.mac(purpose, parts))
    }

    /// Checks a signature by key `id` over `parts` for `purpose`.
    pub fn verify(
        &self,
        purpose: &str,
        parts: &[&[u8]],
        id: &[u8],
        mac: &[u8],
    ) -> Result<(), SigningError> {
        let key = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.id() == id)
            .ok_or_else(|| SigningError::UnknownKey {
                found: hex(id),
                held: std::iter::once(&self.current)
                    .chain(self.previous.as_ref())
                    .map(Key::id_hex)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        if key.verify(purpose, parts, mac) {
            Ok(())
        } else {
            Err(SigningError::BadSignature(purpose.to_string()))
        }
    }
}

/// The `key_file` that means "no key", whatever the default file holds.
pub const NO_KEY: &str = "none";

/// The default key file: `$XDG_CONFIG_HOME/warren/key`, else
/// `~/.config/warren/key`.
pub fn default_key_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("warren").join("key"))
}

/// The key file a setting names (`key_file`), or the default one.
pub fn key_file(setting: &str) -> Option<PathBuf> {
    if setting.is_empty() {
        default_key_file()
    } else {
        Some(PathBuf::from(setting))
    }
}

/// Reads the keyring `key_file` and `previous_key_file` name. An unset
/// `key_file` whose default file does not exist is no key (`Ok(None)`); a
/// file that is named but missing or malformed is an error naming it.
pub fn load(
    key_file_setting: &str,
    previous_setting: &str,
) -> Result<Option<Keyring>, SigningError> {
    if key_file_setting == NO_KEY {
        return Ok(None);
    }
    let Some(path) = key_file(key_file_setting) else {
        return Ok(None);
    };
    if key_file_setting.is_empty() && !path.exists() {
        return Ok(None);
    }
    let current = read_key(&path)?;
    let previous = match previous_setting {
        "" => None,
        p => Some(read_key(Path::new(p))?),
    };
    Ok(Some(Keyring::new(current, previous)))
}

fn read_key(path: &Path) -> Result<Key, SigningError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SigningError::KeyFile(format!(
            "cannot read the key file {} ({e}): make one with `warren key new --file {}`",
            path.display(),
            path.display()
        ))
    })?;
    Key::from_text(&text)
        .map_err(|e| SigningError::KeyFile(format!("key file {}: {e}", path.display())))
}

/// Writes a new key to `path` (mode 0600, its directory made if missing);
/// refuses to overwrite an existing key unless `force`.
pub fn write_new_key(path: &Path, force: bool) -> Result<Key, SigningError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() && !force {
        return Err(SigningError::KeyFile(format!(
            "{} exists already: every process of the namespace uses it; pass --force to replace it (and give the old one to previous_key_file while keys rotate)",
            path.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| SigningError::KeyFile(format!("cannot make {}: {e}", dir.display())))?;
    }
    let key = Key::generate()?;
    // Without `force`, create_new: of two processes making the key at once
    // (two notebooks starting local clusters), one wins and the other reads
    // the winner's key, instead of both writing and one key being lost.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(force)
        .create_new(!force)
        .truncate(force)
        .mode(0o600)
        .open(path)
        .map_err(|e| SigningError::KeyFile(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(key.to_text().as_bytes())
        .map_err(|e| SigningError::KeyFile(format!("cannot write {}: {e}", path.display())))?;
    Ok(key)
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fill: u8) -> Key {
        Key::from_bytes([fill; 32])
    }

    #[test]
    fn vectors_fix_the_derivation_and_the_framing() {
        // Computed once and kept: a change here breaks every signed value
        // and key id already in use.
        let k = key(7);
        assert_eq!(k.id_hex(), hex(&Sha256::digest([7u8; 32])[..8]));
        let mac = k.mac("code", &[b"abc", b""]);
        let again = key(7).mac("code", &[b"abc", b""]);
        assert_eq!(mac, again);
        // keyed_blake3(derive_key(CONTEXT, key "code"), len(abc) abc len("") ""),
        // computed apart from this code with Python's `blake3` package.
        assert_eq!(
            hex(&mac),
            "df2babae178715a1fb624e6be2b3e29713e9fe3e713e1a22a1f37ead7913d77d"
        );
    }

    #[test]
    fn purposes_parts_and_keys_all_change_the_mac() {
        let k = key(1);
        let base = k.mac("args", &[b"ab", b"c"]);
        assert_ne!(base, k.mac("result", &[b"ab", b"c"]));
        assert_ne!(base, k.mac("args", &[b"a", b"bc"]), "parts are framed");
        assert_ne!(base, k.mac("args", &[b"abc"]));
        assert_ne!(base, key(2).mac("args", &[b"ab", b"c"]));
    }

    #[test]
    fn a_keyring_verifies_its_keys_and_names_what_is_wrong() {
        let ring = Keyring::new(key(1), Some(key(2)));
        let (id, mac) = ring.sign("code", &[b"x"]);
        assert_eq!(ring.verify("code", &[b"x"], &id, &mac), Ok(()));
        // Signed with the previous key: accepted while keys rotate.
        let old = Keyring::new(key(2), None);
        let (old_id, old_mac) = old.sign("code", &[b"x"]);
        assert_eq!(ring.verify("code", &[b"x"], &old_id, &old_mac), Ok(()));
        let after = Keyring::new(key(1), None);
        assert!(matches!(
            after.verify("code", &[b"x"], &old_id, &old_mac),
            Err(SigningError::UnknownKey { .. })
        ));
        // Any flipped byte, or another purpose, fails.
        let mut bad = mac;
        bad[0] ^= 1;
        assert_eq!(
            ring.verify("code", &[b"x"], &id, &bad),
            Err(SigningError::BadSignature("code".into()))
        );
        assert!(ring.verify("code", &[b"y"], &id, &mac).is_err());
        assert!(ring.verify("result", &[b"x"], &id, &mac).is_err());
        assert!(ring.verify("code", &[b"x"], &id, &mac[..31]).is_err());
    }

    #[test]
    fn key_files_round_trip_and_bad_ones_are_named() {
        let k = key(9);
        assert_eq!(Key::from_text(&k.to_text()), Ok(k.clone()));
        for bad in [
            "",
            "warren-key-v1:",
            "warren-key-v1:zz",
            &format!("x{}", k.to_text()),
        ] {
            assert!(Key::from_text(bad).is_err(), "{bad:?}");
        }
        let dir = std::env::temp_dir().join(format!("warren-key-{}", std::process::id()));
        let path = dir.join("sub").join("key");
        let made = write_new_key(&path, false).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            write_new_key(&path, false)
                .unwrap_err()
                .to_string()
                .contains("--force")
        );
        let ring = load(path.to_str().unwrap(), "").unwrap().unwrap();
        assert_eq!(ring.current(), &made);
        let e = load(dir.join("missing").to_str().unwrap(), "").unwrap_err();
        assert!(e.to_string().contains("warren key new"), "{e}");
        assert_ne!(Key::generate().unwrap(), Key::generate().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
