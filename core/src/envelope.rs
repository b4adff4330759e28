//! The binary envelope of a value that is not JSON: a Python `bytes`,
//! `tuple`, `set`, a numpy array, a pickled object or function.
//!
//! JSON stays JSON on the wire (the CLI and Rust functions read it as
//! always). Anything else is one envelope: a small JSON header (the codec
//! and type, written and read by the Python package) and raw frames (an
//! array's buffer travels as itself: no base64, no JSON). It is stored as a
//! value of its own in Redis and messages carry only a reference to it
//! (see [`crate::store`]'s blobs), so no scheduler and no RabbitMQ message
//! holds its bytes.
//!
//! The layout is length-prefixed throughout, and the MAC covers every byte
//! before it (the body), the kind and purpose included:
//!
//! ```text
//! "WRNE" | version 3 | kind (0 data, 1 pickle) | purpose (u8 length, ASCII)
//!        | key id (8 bytes, zeros when unsigned)
//!        | header (u32 length, JSON) | frames (u32 count, then u64 length and bytes each)
//!        | MAC (32 bytes; signed only)
//! ```
//!
//! The MAC is keyed BLAKE3, under the key's subkey for the purpose, of the
//! body's plain BLAKE3 hash (version 3; version 2 keyed the whole body).
//! Why over the hash: a stored value is named by the BLAKE3 hash of all its
//! bytes, and BLAKE3 is a tree hash whose state after the body can be
//! finished once for the MAC and continued over the MAC for the name, so
//! [`seal_into`] hashes a value's bytes once instead of twice (the hashing
//! was 31% of all CPU in issue 36's benchmark, BENCHMARKS.md). A MAC of a
//! collision-resistant hash is as strong as a MAC of the bytes.
//!
//! A data envelope needs no key: its codecs build values, never run code.
//! A pickle envelope is opened only when it is signed by a key the reader
//! holds, for the purpose the reader expects ([`open`] refuses anything
//! else), so no path can unpickle unsigned or replayed bytes. Opening is
//! pure and fuzzed: hostile bytes are an error, never a panic.

use crate::signing::{Keyring, SigningError, hex};

/// The magic bytes every envelope starts with.
pub const MAGIC: &[u8; 4] = b"WRNE";
/// The version sealed: 3 since the MAC covers the body's hash (2 keyed the
/// body itself; 1 was HMAC-SHA256, refused by its version, not as a bad
/// signature).
pub(crate) const VERSION: u8 = 3;
/// Version 2 is still opened: values stored before an upgrade live until
/// their futures are forgotten (`result_ttl_secs`).
pub(crate) const OLD_VERSION: u8 = 2;
const UNSIGNED: [u8; 8] = [0; 8];

/// What an envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Values built by typed codecs (bytes, tuples, sets, dates, arrays).
    Data,
    /// A pickle: code, or any object. Opened only when signed.
    Pickle,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Data => 0,
            Kind::Pickle => 1,
        }
    }
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not an envelope, or cut short, or inconsistent.
    #[error("not a warren value envelope: {0}")]
    Malformed(String),
    /// Sealed for another purpose than the reader's.
    #[error("a value sealed as {found:?} was offered as {expected:?}")]
    Purpose {
        /// The purpose in the envelope.
        found: String,
        /// The purpose the reader expects.
        expected: String,
    },
    /// Its signature is missing, unknown or wrong.
    #[error("a pickled value was refused: {0}")]
    Signature(#[from] SigningError),
    /// Writing a sealed envelope out failed ([`seal_into`]).
    #[error("the envelope could not be written: {0}")]
    Write(String),
    /// A pickle, and this process holds no key.
    #[error(
        "a pickled value was refused: this process holds no key to check its signature (setting key_file; `warren key new`)"
    )]
    NoKey,
}

/// Seals `header` and `frames` for `purpose`, signed with `keys` when given
/// (a pickle must be).
pub fn seal(
    kind: Kind,
    purpose: &str,
    header: &[u8],
    frames: &[&[u8]],
    keys: Option<&Keyring>,
) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = vec![0; sealed_len(kind, purpose, header, frames, keys)?];
    write_body(&mut out, kind, purpose, header, frames, keys)?;
    if let Some(keys) = keys {
        sign_body(&mut out, purpose, keys);
    }
    Ok(out)
}

/// A frame to seal: its size, and how its bytes are written into the
/// envelope. A byte slice is one; the Python extension's buffers (a numpy
/// array's memory) are others, copied straight into the envelope with no
/// intermediate `bytes`.
pub trait Frame {
    /// Its length in bytes.
    fn size(&self) -> usize;
    /// Writes its bytes into `out`, which is [`Frame::size`] long.
    fn write(&self, out: &mut [u8]) -> Result<(), EnvelopeError>;
}

impl Frame for &[u8] {
    fn size(&self) -> usize {
        self.len()
    }

    fn write(&self, out: &mut [u8]) -> Result<(), EnvelopeError> {
        out.copy_from_slice(self);
        Ok(())
    }
}

/// The length of the envelope [`seal`] would make, or why it cannot be
/// made; so that a caller can give [`write_body`] the buffer it owns (a
/// Python `bytes`), and a big value is written once, with no second buffer
/// to allocate and copy from.
pub fn sealed_len<F: Frame>(
    kind: Kind,
    purpose: &str,
    header: &[u8],
    frames: &[F],
    keys: Option<&Keyring>,
) -> Result<usize, EnvelopeError> {
    if purpose.is_empty() || purpose.len() > 64 || !purpose.is_ascii() {
        return Err(EnvelopeError::Malformed(format!("purpose {purpose:?}")));
    }
    if kind == Kind::Pickle && keys.is_none() {
        return Err(EnvelopeError::NoKey);
    }
    u32::try_from(header.len())
        .map_err(|_| EnvelopeError::Malformed("header over 4 GiB".into()))?;
    u32::try_from(frames.len()).map_err(|_| EnvelopeError::Malformed("too many frames".into()))?;
    Ok(4 + 3
        + purpose.len()
        + 8
        + 4
        + header.len()
        + 4
        + frames.iter().map(|f| 8 + f.size()).sum::<usize>()
        + if keys.is_some() { 32 } else { 0 })
}

/// [`seal`] but the MAC, into `out` ([`sealed_len`] bytes): everything it covers, the signing key's id
/// included. Apart so that the extension writes frames holding the GIL
/// (they are Python buffers) and MACs without it.
pub fn write_body<F: Frame>(
    out: &mut [u8],
    kind: Kind,
    purpose: &str,
    header: &[u8],
    frames: &[F],
    keys: Option<&Keyring>,
) -> Result<(), EnvelopeError> {
    let len = sealed_len(kind, purpose, header, frames, keys)?;
    if out.len() != len {
        return Err(EnvelopeError::Malformed(format!(
            "a buffer of {} bytes for an envelope of {len}",
            out.len()
        )));
    }
    let mut w = Writer { out, at: 0 };
    w.put(MAGIC);
    w.put(&[VERSION, kind.byte(), purpose.len() as u8]);
    w.put(purpose.as_bytes());
    w.put(&keys.map_or(UNSIGNED, |k| k.current().id()));
    w.put(&(header.len() as u32).to_le_bytes());
    w.put(header);
    w.put(&(frames.len() as u32).to_le_bytes());
    for f in frames {
        w.put(&(f.size() as u64).to_le_bytes());
        f.write(&mut w.out[w.at..w.at + f.size()])?;
        w.at += f.size();
    }
    Ok(())
}

/// [`seal`], written to `out` as it is made, for a value too big to hold
/// twice in memory (it goes straight to a file): the same bytes. Returns
/// the envelope's length and its BLAKE3 hash (its name as a stored value,
/// [`crate::store::blobs::BlobRef`]'s), both computed on the way.
pub fn seal_into<W: std::io::Write>(
    out: &mut W,
    kind: Kind,
    purpose: &str,
    header: &[u8],
    frames: &[&[u8]],
    keys: Option<&Keyring>,
) -> Result<(u64, String), EnvelopeError> {
    let len = sealed_len(kind, purpose, header, frames, keys)? as u64;
    let mut w = Tee {
        out,
        content: blake3::Hasher::new(),
    };
    w.put(MAGIC)?;
    w.put(&[VERSION, kind.byte(), purpose.len() as u8])?;
    w.put(purpose.as_bytes())?;
    w.put(&keys.map_or(UNSIGNED, |k| k.current().id()))?;
    w.put(&(header.len() as u32).to_le_bytes())?;
    w.put(header)?;
    w.put(&(frames.len() as u32).to_le_bytes())?;
    for f in frames {
        w.put(&(f.len() as u64).to_le_bytes())?;
        w.put(f)?;
    }
    if let Some(keys) = keys {
        // The body's hash is the content hash so far, finished on a copy.
        let body = w.content.clone().finalize();
        w.put(&mac_of_body(purpose, keys, &body))?;
    }
    Ok((len, w.content.finalize().to_hex().to_string()))
}

/// The MAC of a body whose BLAKE3 hash is `body`, by the current key.
fn mac_of_body(purpose: &str, keys: &Keyring, body: &blake3::Hash) -> [u8; 32] {
    keys.sign(purpose, &[body.as_bytes()]).1
}

/// [`seal_into`]'s writer: the bytes go out and into the content hash.
struct Tee<'a, W> {
    out: &'a mut W,
    content: blake3::Hasher,
}

impl<W: std::io::Write> Tee<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EnvelopeError> {
        self.out
            .write_all(bytes)
            .map_err(|e| EnvelopeError::Write(e.to_string()))?;
        self.content.update(bytes);
        Ok(())
    }
}

/// Writes the MAC into the last 32 bytes of `out`, over all before them:
/// the last step of [`seal`], after [`write_body`].
pub fn sign_body(out: &mut [u8], purpose: &str, keys: &Keyring) {
    let Some(body_end) = out.len().checked_sub(32) else {
        return;
    };
    let mac = mac_of_body(purpose, keys, &blake3::hash(&out[..body_end]));
    out[body_end..].copy_from_slice(&mac);
}

/// Writes at the front of what is left of a buffer [`sealed_len`] sized.
struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.out[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

/// An opened envelope: its header and frames, as ranges of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Data or pickle.
    pub kind: Kind,
    /// The id of the key that signed it, if one did and it was checked.
    pub signed_by: Option<String>,
    /// The header's bytes.
    pub header: std::ops::Range<usize>,
    /// Each frame's bytes.
    pub frames: Vec<std::ops::Range<usize>>,
}

/// Whether `bytes` looks like an envelope (its magic).
pub fn is_envelope(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// An envelope's parts, parsed but not checked: for display only (`warren
/// result` describes a value by its header). Never load what this returns;
/// [`open`] is the only way to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Data or pickle.
    pub kind: Kind,
    /// The purpose it was sealed for.
    pub purpose: String,
    /// The signing key's id, if it is signed.
    pub key_id: Option<String>,
    /// The header's bytes.
    pub header: std::ops::Range<usize>,
    /// Each frame's bytes.
    pub frames: Vec<std::ops::Range<usize>>,
    /// Where the MAC starts (the end of what it covers).
    body_end: usize,
    id: [u8; 8],
    /// [`VERSION`] or [`OLD_VERSION`]: what the MAC covers.
    version: u8,
}

/// Parses an envelope's layout (bounds checked, nothing verified).
pub fn inspect(bytes: &[u8]) -> Result<Parsed, EnvelopeError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4)? != MAGIC {
        return Err(EnvelopeError::Malformed("no WRNE magic".into()));
    }
    let version = r.byte()?;
    if version != VERSION && version != OLD_VERSION {
        return Err(EnvelopeError::Malformed(format!(
            "version {version} (this build reads {OLD_VERSION} and {VERSION})"
        )));
    }
    let kind = match r.byte()? {
        0 => Kind::Data,
        1 => Kind::Pickle,
        k => return Err(EnvelopeError::Malformed(format!("kind {k}"))),
    };
    let purpose_len = r.byte()? as usize;
    let purpose = String::from_utf8_lossy(r.take(purpose_len)?).into_owned();
    let id: [u8; 8] = r
        .take(8)?
        .try_into()
        .map_err(|_| EnvelopeError::Malformed("key id".into()))?;
    let header_len = r.u32()? as usize;
    let header = r.range(header_len)?;
    let count = r.u32()? as usize;
    // Each frame takes at least its 8-byte length: a count the bytes cannot
    // hold is refused before anything is allocated for it.
    if count > r.left() / 8 {
        return Err(EnvelopeError::Malformed(format!(
            "{count} frames in {} bytes",
            r.left()
        )));
    }
    let mut frames = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::try_from(r.u64()?)
            .map_err(|_| EnvelopeError::Malformed("frame length".into()))?;
        frames.push(r.range(len)?);
    }
    let body_end = r.at;
    let signed = id != UNSIGNED;
    let expected = if signed { 32 } else { 0 };
    if r.left() != expected {
        return Err(EnvelopeError::Malformed(format!(
            "{} bytes after the frames, not {expected}",
            r.left()
        )));
    }
    Ok(Parsed {
        kind,
        purpose,
        key_id: signed.then(|| hex(&id)),
        header,
        frames,
        body_end,
        id,
        version,
    })
}

/// Opens an envelope sealed for `purpose`. A pickle must be signed by a key
/// of `keys`; a data envelope's signature is checked when `keys` is given
/// and it has one (and refused if wrong), else it opens unchecked.
pub fn open(bytes: &[u8], purpose: &str, keys: Option<&Keyring>) -> Result<Opened, EnvelopeError> {
    open_checked(bytes, purpose, keys, None)
}

/// The BLAKE3 hash of all but the last 32 bytes of a stored value (a
/// signed envelope's body), found while its name was checked
/// ([`crate::store::blobs::BlobRef::check`]): [`open_checked`] does not
/// hash the body again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyHash {
    hash: blake3::Hash,
    len: usize,
}

impl BodyHash {
    /// The hash `hash` of a value's first `len` bytes.
    pub(crate) fn new(hash: blake3::Hash, len: usize) -> Self {
        Self { hash, len }
    }
}

/// [`open`] of bytes whose name was just checked, with the body hash that
/// check found (`body`, from [`crate::store::blobs::BlobRef::check`] of
/// these same bytes): a version 3 MAC is then checked without hashing the
/// body a second time. A hash of another length is not used.
pub fn open_checked(
    bytes: &[u8],
    purpose: &str,
    keys: Option<&Keyring>,
    body: Option<&BodyHash>,
) -> Result<Opened, EnvelopeError> {
    let p = inspect(bytes)?;
    if p.purpose != purpose {
        return Err(EnvelopeError::Purpose {
            found: p.purpose,
            expected: purpose.to_string(),
        });
    }
    let signed_by = match (&p.key_id, keys) {
        (Some(id), Some(keys)) => {
            let whole = &bytes[..p.body_end];
            let body_hash;
            let covered: &[u8] = match body {
                _ if p.version == OLD_VERSION => whole,
                Some(b) if b.len == p.body_end => b.hash.as_bytes(),
                _ => {
                    body_hash = blake3::hash(whole);
                    body_hash.as_bytes()
                }
            };
            keys.verify(purpose, &[covered], &p.id, &bytes[p.body_end..])?;
            Some(id.clone())
        }
        (Some(_), None) if p.kind == Kind::Pickle => return Err(EnvelopeError::NoKey),
        (Some(_), None) => None,
        (None, _) if p.kind == Kind::Pickle => {
            return Err(SigningError::Unsigned("pickle".into()).into());
        }
        (None, _) => None,
    };
    Ok(Opened {
        kind: p.kind,
        signed_by,
        header: p.header,
        frames: p.frames,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn range(&mut self, n: usize) -> Result<std::ops::Range<usize>, EnvelopeError> {
        if n > self.left() {
            return Err(EnvelopeError::Malformed(format!(
                "{n} bytes wanted at {}, {} left",
                self.at,
                self.left()
            )));
        }
        let r = self.at..self.at + n;
        self.at += n;
        Ok(r)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        let r = self.range(n)?;
        Ok(&self.bytes[r])
    }

    fn byte(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, EnvelopeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Key;
    use proptest::prelude::*;

    fn ring(fill: u8) -> Keyring {
        Keyring::new(Key::from_bytes([fill; 32]), None)
    }

    fn parts<'a>(bytes: &'a [u8], o: &Opened) -> (&'a [u8], Vec<&'a [u8]>) {
        (
            &bytes[o.header.clone()],
            o.frames.iter().map(|f| &bytes[f.clone()]).collect(),
        )
    }

    #[test]
    fn sealing_into_a_writer_makes_the_same_bytes_and_names_them() {
        let keys = ring(3);
        let frame = vec![7u8; 100_000];
        for (kind, keys) in [
            (Kind::Data, None),
            (Kind::Data, Some(&keys)),
            (Kind::Pickle, Some(&keys)),
        ] {
            let whole = seal(kind, "value", b"{\"v\":1}", &[&frame, b"x"], keys).unwrap();
            let mut out = Vec::new();
            let (len, hash) =
                seal_into(&mut out, kind, "value", b"{\"v\":1}", &[&frame, b"x"], keys).unwrap();
            assert_eq!(out, whole);
            assert_eq!(len, whole.len() as u64);
            assert_eq!(hash, blake3::hash(&whole).to_hex().to_string());
        }
        let mut out = Vec::new();
        assert_eq!(
            seal_into(&mut out, Kind::Pickle, "value", b"{}", &[], None),
            Err(EnvelopeError::NoKey)
        );
    }

    #[test]
    fn data_round_trips_signed_or_not() {
        let frames: [&[u8]; 3] = [b"", b"abc", &[0u8; 1000]];
        for keys in [None, Some(ring(1))] {
            let sealed = seal(
                Kind::Data,
                "args",
                br#"{"t":"tuple"}"#,
                &frames,
                keys.as_ref(),
            )
            .unwrap();
            assert!(is_envelope(&sealed));
            let o = open(&sealed, "args", keys.as_ref()).unwrap();
            assert_eq!(o.kind, Kind::Data);
            assert_eq!(o.signed_by.is_some(), keys.is_some());
            let (h, f) = parts(&sealed, &o);
            assert_eq!(h, br#"{"t":"tuple"}"#);
            assert_eq!(f, frames.to_vec());
        }
    }

    #[test]
    fn the_layout_is_fixed_byte_for_byte_and_written_only_into_its_size() {
        let sealed = seal(Kind::Data, "args", b"{}", &[b"ab"], None).unwrap();
        let mut expected = b"WRNE\x03\x00\x04args".to_vec();
        expected.extend([0u8; 8]); // no key id
        expected.extend(2u32.to_le_bytes());
        expected.extend(b"{}");
        expected.extend(1u32.to_le_bytes());
        expected.extend(2u64.to_le_bytes());
        expected.extend(b"ab");
        assert_eq!(sealed, expected);
        let frames: [&[u8]; 1] = [b"ab"];
        let len = sealed_len(Kind::Data, "args", b"{}", &frames, None).unwrap();
        assert_eq!(len, sealed.len());
        let mut short = vec![0; len - 1];
        assert!(write_body(&mut short, Kind::Data, "args", b"{}", &frames, None).is_err());
        let signed = seal(Kind::Data, "args", b"{}", &[b"ab"], Some(&ring(1))).unwrap();
        assert_eq!(signed.len(), len + 32);
    }

    #[test]
    fn a_pickle_opens_only_signed_by_a_held_key_for_its_purpose() {
        let keys = ring(1);
        assert_eq!(
            seal(Kind::Pickle, "code", b"{}", &[b"p"], None),
            Err(EnvelopeError::NoKey)
        );
        let sealed = seal(Kind::Pickle, "code", b"{}", &[b"pickle"], Some(&keys)).unwrap();
        assert!(open(&sealed, "code", Some(&keys)).is_ok());
        assert_eq!(open(&sealed, "code", None), Err(EnvelopeError::NoKey));
        assert!(matches!(
            open(&sealed, "code", Some(&ring(2))),
            Err(EnvelopeError::Signature(SigningError::UnknownKey { .. }))
        ));
        assert!(matches!(
            open(&sealed, "result", Some(&keys)),
            Err(EnvelopeError::Purpose { .. })
        ));
        // Every flipped byte is refused (or, in the length fields, malformed).
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            assert!(open(&bad, "code", Some(&keys)).is_err(), "byte {i}");
        }
        // An unsigned pickle, made by hand, is refused.
        let mut unsigned = seal(Kind::Data, "code", b"{}", &[b"pickle"], None).unwrap();
        unsigned[5] = 1;
        assert!(matches!(
            open(&unsigned, "code", Some(&keys)),
            Err(EnvelopeError::Signature(SigningError::Unsigned(_)))
        ));
        // A signed result replayed with its purpose bytes rewritten fails the MAC.
        let result = seal(Kind::Pickle, "result", b"{}", &[b"x"], Some(&keys)).unwrap();
        let mut replay = result.clone();
        replay[8..14].copy_from_slice(b"code\0\0");
        assert!(open(&replay, "code", Some(&keys)).is_err());
    }

    /// `hex` of `bytes`, for vectors.
    fn hexed(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_mac_covers_the_bodys_hash_and_the_name_continues_it() {
        // Computed apart from this code with Python's `blake3` package:
        // mac = keyed_blake3(derive_key(CONTEXT, key || "args"),
        //                    le64(32) || blake3(body)), name = blake3(body || mac).
        let sealed = seal(Kind::Data, "args", b"{}", &[b"ab"], Some(&ring(1))).unwrap();
        let (body, mac) = sealed.split_at(sealed.len() - 32);
        assert_eq!(&body[..5], b"WRNE\x03");
        assert_eq!(
            hexed(mac),
            "522ef2c76ab69afefd894759b581463011756f57203f88093e44709cbe68156a"
        );
        let mut into = Vec::new();
        let frames: [&[u8]; 1] = [b"ab"];
        let (len, name) = seal_into(
            &mut into,
            Kind::Data,
            "args",
            b"{}",
            &frames,
            Some(&ring(1)),
        )
        .unwrap();
        assert_eq!(
            (into.as_slice(), len),
            (sealed.as_slice(), sealed.len() as u64)
        );
        assert_eq!(
            name,
            "9363fd4fa5e11bd7f497e2d7b9c044b0375de22781720dfd9c5e82ef6b39db70"
        );
    }

    #[test]
    fn a_version_2_envelope_still_opens_and_its_mac_binds_its_version() {
        // Sealed by the previous release (the MAC keyed over the body), as
        // values stored before an upgrade are: computed with Python's `blake3`.
        let old = "57524e450200046172677372cd6e8422c407fb020000007b7d010000000200000000000000\
                   61626e6778e6f72749ed1882e2e88e3bffb0e3c0c089f3480e60c07ba83dc2e462a3";
        let old: Vec<u8> = (0..old.len() / 2)
            .map(|i| u8::from_str_radix(&old[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let opened = open(&old, "args", Some(&ring(1))).unwrap();
        assert_eq!(parts(&old, &opened), (&b"{}"[..], vec![&b"ab"[..]]));
        assert!(open(&old, "args", Some(&ring(2))).is_err(), "another key");
        // Relabelling either version as the other breaks its MAC: the
        // version byte is part of what each MAC covers.
        let mut relabelled = old.clone();
        relabelled[4] = VERSION;
        assert!(matches!(
            open(&relabelled, "args", Some(&ring(1))),
            Err(EnvelopeError::Signature(_))
        ));
        let mut new = seal(Kind::Data, "args", b"{}", &[b"ab"], Some(&ring(1))).unwrap();
        new[4] = OLD_VERSION;
        assert!(matches!(
            open(&new, "args", Some(&ring(1))),
            Err(EnvelopeError::Signature(_))
        ));
        new[4] = 4;
        assert!(matches!(
            open(&new, "args", Some(&ring(1))),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn opening_with_the_body_hash_of_a_name_check_gives_the_same_answers() {
        use crate::store::blobs::BlobRef;
        let keys = ring(1);
        let sealed = seal(Kind::Pickle, "code", b"{}", &[b"p"], Some(&keys)).unwrap();
        let body = BlobRef::of(&sealed).check(&sealed).unwrap();
        assert_eq!(
            open_checked(&sealed, "code", Some(&keys), Some(&body)),
            open(&sealed, "code", Some(&keys))
        );
        assert!(open_checked(&sealed, "code", Some(&ring(2)), Some(&body)).is_err());
        // A hash of another length is not trusted for these bytes.
        let other = BodyHash::new(blake3::hash(b"x"), 1);
        assert!(open_checked(&sealed, "code", Some(&keys), Some(&other)).is_ok());
        let mut forged = sealed.clone();
        let last_of_body = forged.len() - 33; // the pickle's one byte
        forged[last_of_body] ^= 1;
        let forged_body = BlobRef::of(&forged).check(&forged).unwrap();
        assert!(matches!(
            open_checked(&forged, "code", Some(&keys), Some(&forged_body)),
            Err(EnvelopeError::Signature(_))
        ));
    }

    #[test]
    fn a_data_envelope_with_a_wrong_signature_is_refused_when_checked() {
        let sealed = seal(Kind::Data, "args", b"{}", &[b"x"], Some(&ring(1))).unwrap();
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(open(&bad, "args", Some(&ring(1))).is_err());
        // Without a key, data opens unchecked: it holds no code.
        assert!(open(&bad, "args", None).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn no_bytes_panic_open(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&bytes);
            let _ = open(&b, "args", Some(&ring(1)));
            let _ = open(&b, "code", None);
            let _ = open(&bytes, "args", None);
        }

        #[test]
        fn mutated_envelopes_panic_nothing(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
            let keys = ring(3);
            let mut b = seal(Kind::Pickle, "code", b"{\"t\":1}", &[b"ab", b"cde"], Some(&keys)).unwrap();
            for (at, byte) in edits {
                let i = at.index(b.len());
                b[i] = byte;
            }
            let _ = open(&b, "code", Some(&keys));
        }
    }
}
