//! An envelope read as its bytes arrive: its header, then its frames'
//! bytes, without ever holding the whole value.
//!
//! [`crate::envelope::inspect`] wants the envelope in memory. `warren
//! result --raw KEY > FILE` of a value of gigabytes should not need that
//! memory, so [`Unframer`] is the same layout as a push parser: it is fed
//! chunks as the store gives them and hands back the parts of each chunk
//! that are frame bytes. It is pure (no I/O, no allocation beyond the
//! header), refuses what [`crate::envelope::inspect`] refuses, and is
//! fuzzed against it: hostile bytes are an error, never a panic.
//!
//! Nothing here checks a signature or the content hash: the caller checks
//! the bytes against their reference as they pass
//! ([`crate::store::stream::BlobReader`]), and nothing read this way is
//! ever loaded as a value, only written out.

use crate::envelope::{EnvelopeError, Kind, MAGIC, OLD_VERSION, VERSION};

/// The largest header read this way: headers describe a value (its codec,
/// type, shape) in a few hundred bytes; a length past this is a hostile or
/// broken envelope, refused before anything is gathered for it.
pub const MAX_HEADER: usize = 1 << 20;

/// A push parser of one envelope: [`Unframer::feed`] each chunk in order,
/// then [`Unframer::finish`].
#[derive(Debug, Default)]
pub struct Unframer {
    want: Want,
    /// The bytes of the fixed-size field being gathered.
    got: Vec<u8>,
    kind: Option<Kind>,
    key_id: Option<[u8; 8]>,
    header: Option<Vec<u8>>,
    frames_left: u32,
    seen: u64,
}

/// What the next bytes are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Want {
    /// Magic, version, kind and the purpose's length: 7 bytes.
    #[default]
    Lead,
    Purpose(usize),
    KeyId,
    HeaderLen,
    Header(usize),
    Count,
    FrameLen,
    /// Bytes of a frame, this many left.
    Frame(u64),
    Mac,
    End,
}

impl Want {
    /// The bytes gathered before the field is read; `None` for frame bytes,
    /// which pass through.
    fn size(self) -> Option<usize> {
        match self {
            Want::Lead => Some(7),
            Want::Purpose(n) | Want::Header(n) => Some(n),
            Want::KeyId | Want::FrameLen => Some(8),
            Want::HeaderLen | Want::Count => Some(4),
            Want::Mac => Some(32),
            Want::Frame(_) | Want::End => None,
        }
    }
}

impl Unframer {
    /// A parser at the envelope's first byte.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `chunk`, the next bytes of the envelope, and returns the parts
    /// of it that are frame bytes, in order (empty while the envelope's
    /// head is read). An error for bytes no envelope can have.
    pub fn feed<'a>(&mut self, mut chunk: &'a [u8]) -> Result<Vec<&'a [u8]>, EnvelopeError> {
        let mut out = Vec::new();
        self.seen += chunk.len() as u64;
        self.settle()?;
        while !chunk.is_empty() {
            match self.want {
                Want::Frame(left) => {
                    let n = usize::try_from(left).map_or(chunk.len(), |l| l.min(chunk.len()));
                    let (frame, rest) = chunk.split_at(n);
                    out.push(frame);
                    chunk = rest;
                    self.want = Want::Frame(left - n as u64);
                }
                Want::End => {
                    return Err(EnvelopeError::Malformed(format!(
                        "{} bytes after the envelope's end",
                        chunk.len()
                    )));
                }
                fixed => {
                    let size = fixed.size().unwrap_or(0);
                    let n = (size - self.got.len()).min(chunk.len());
                    let (field, rest) = chunk.split_at(n);
                    self.got.extend_from_slice(field);
                    chunk = rest;
                }
            }
            self.settle()?;
        }
        Ok(out)
    }

    /// Ends the read: an error if the envelope was cut short.
    pub fn finish(&self) -> Result<(), EnvelopeError> {
        if self.want == Want::End {
            return Ok(());
        }
        Err(EnvelopeError::Malformed(format!(
            "cut short after {} bytes (reading its {:?})",
            self.seen, self.want
        )))
    }

    /// The envelope's header, once it has been read.
    pub fn header(&self) -> Option<&[u8]> {
        self.header.as_deref()
    }

    /// Data or pickle, once read.
    pub fn kind(&self) -> Option<Kind> {
        self.kind
    }

    /// The signing key's id in hex, once read, if the envelope is signed.
    pub fn key_id(&self) -> Option<String> {
        self.key_id
            .filter(|id| *id != [0; 8])
            .map(|id| crate::signing::hex(&id))
    }

    /// Reads every field whose bytes are all here (several in a row when
    /// the next are empty: a purpose or header of no bytes, a frame of
    /// none).
    fn settle(&mut self) -> Result<(), EnvelopeError> {
        loop {
            match self.want {
                Want::Frame(0) => self.want = self.next_frame(),
                w => match w.size() {
                    Some(size) if self.got.len() == size => {
                        self.want = self.read_field(w)?;
                        self.got.clear();
                    }
                    _ => return Ok(()),
                },
            }
        }
    }

    /// The field `w` is gathered in `got`: what comes after it.
    fn read_field(&mut self, w: Want) -> Result<Want, EnvelopeError> {
        let b = &self.got;
        Ok(match w {
            Want::Lead => {
                if &b[..4] != MAGIC {
                    return Err(EnvelopeError::Malformed("no WRNE magic".into()));
                }
                if b[4] != VERSION && b[4] != OLD_VERSION {
                    return Err(EnvelopeError::Malformed(format!(
                        "version {} (this build reads {OLD_VERSION} and {VERSION})",
                        b[4]
                    )));
                }
                self.kind = Some(match b[5] {
                    0 => Kind::Data,
                    1 => Kind::Pickle,
                    k => return Err(EnvelopeError::Malformed(format!("kind {k}"))),
                });
                Want::Purpose(b[6] as usize)
            }
            Want::Purpose(_) => Want::KeyId,
            Want::KeyId => {
                let mut id = [0u8; 8];
                id.copy_from_slice(b);
                self.key_id = Some(id);
                Want::HeaderLen
            }
            Want::HeaderLen => {
                let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
                if n > MAX_HEADER {
                    return Err(EnvelopeError::Malformed(format!(
                        "a header of {n} bytes (at most {MAX_HEADER} are read)"
                    )));
                }
                Want::Header(n)
            }
            Want::Header(_) => {
                self.header = Some(b.clone());
                Want::Count
            }
            Want::Count => {
                self.frames_left = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                self.next_frame()
            }
            Want::FrameLen => {
                let mut len = [0u8; 8];
                len.copy_from_slice(b);
                Want::Frame(u64::from_le_bytes(len))
            }
            Want::Mac => Want::End,
            Want::Frame(_) | Want::End => w,
        })
    }

    fn next_frame(&mut self) -> Want {
        if self.frames_left > 0 {
            self.frames_left -= 1;
            Want::FrameLen
        } else if self.key_id().is_some() {
            Want::Mac
        } else {
            Want::End
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{inspect, seal};
    use crate::signing::{Key, Keyring};
    use proptest::prelude::*;

    /// Feeds `bytes` in chunks of `step`: the frames' bytes joined, or the
    /// first error.
    fn unframe(bytes: &[u8], step: usize) -> Result<(Unframer, Vec<u8>), EnvelopeError> {
        let mut u = Unframer::new();
        let mut out = Vec::new();
        for chunk in bytes.chunks(step.max(1)) {
            for piece in u.feed(chunk)? {
                out.extend_from_slice(piece);
            }
        }
        u.finish()?;
        Ok((u, out))
    }

    /// The frames' bytes joined, as `inspect` finds them.
    fn inspected(bytes: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let p = inspect(bytes)?;
        Ok(p.frames
            .iter()
            .flat_map(|f| bytes[f.clone()].to_vec())
            .collect())
    }

    #[test]
    fn frames_come_out_whatever_the_chunks_and_the_header_is_kept() {
        let ring = Keyring::new(Key::from_bytes([9; 32]), None);
        let header = br#"{"codec":"data","describe":"bytes"}"#;
        let frames: [&[u8]; 4] = [b"first", b"", &[7u8; 1000], b"z"];
        for keys in [None, Some(&ring)] {
            let sealed = seal(Kind::Data, "value", header, &frames, keys).unwrap();
            for step in [1, 2, 7, 33, 999, sealed.len()] {
                let (u, out) = unframe(&sealed, step).unwrap();
                assert_eq!(out, frames.concat(), "step {step}");
                assert_eq!(u.header(), Some(&header[..]));
                assert_eq!(u.kind(), Some(Kind::Data));
                assert_eq!(u.key_id().is_some(), keys.is_some());
            }
        }
        // No frames and an empty header.
        let bare = seal(Kind::Pickle, "code", b"", &[], Some(&ring)).unwrap();
        let (u, out) = unframe(&bare, 1).unwrap();
        assert!(out.is_empty());
        assert_eq!(u.kind(), Some(Kind::Pickle));
        assert_eq!(
            u.key_id(),
            Some(ring.current().id()).map(|id| crate::signing::hex(&id))
        );
    }

    #[test]
    fn cut_short_extended_or_wrong_envelopes_are_refused_by_name() {
        let sealed = seal(Kind::Data, "value", b"{}", &[b"abc"], None).unwrap();
        for cut in 0..sealed.len() {
            let err = unframe(&sealed[..cut], 3).unwrap_err().to_string();
            assert!(err.contains("cut short"), "{cut}: {err}");
        }
        let mut longer = sealed.clone();
        longer.push(0);
        let err = unframe(&longer, 4).unwrap_err().to_string();
        assert!(err.contains("after the envelope's end"), "{err}");
        let mut magic = sealed.clone();
        magic[0] = b'X';
        assert!(
            unframe(&magic, 64)
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        let mut version = sealed.clone();
        version[4] = 1;
        assert!(
            unframe(&version, 64)
                .unwrap_err()
                .to_string()
                .contains("version 1")
        );
        // A header length no value needs is refused before it is gathered.
        let mut huge = sealed[..7 + "value".len() + 8].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = Unframer::new().feed(&huge).unwrap_err().to_string();
        assert!(err.contains("header of 4294967295 bytes"), "{err}");
    }

    proptest! {
        /// Whatever the bytes and however they are cut: no panic, and the
        /// same answer as `inspect` on the whole (no header here reaches
        /// [`MAX_HEADER`], where the two part).
        #[test]
        fn streaming_agrees_with_inspect(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            step in 1usize..40,
        ) {
            let streamed = unframe(&bytes, step).map(|(_, out)| out);
            prop_assert_eq!(streamed.is_ok(), inspected(&bytes).is_ok());
            if let Ok(out) = streamed {
                prop_assert_eq!(out, inspected(&bytes).unwrap());
            }
        }

        /// Real envelopes, their bytes flipped at one place: the same.
        #[test]
        fn a_damaged_envelope_gets_the_same_answer(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..4),
            signed in any::<bool>(),
            at in any::<prop::sample::Index>(),
            xor in 1u8..,
            step in 1usize..40,
        ) {
            let ring = Keyring::new(Key::from_bytes([5; 32]), None);
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            let mut sealed =
                seal(Kind::Data, "value", b"{}", &refs, signed.then_some(&ring)).unwrap();
            let i = at.index(sealed.len());
            sealed[i] ^= xor;
            let streamed = unframe(&sealed, step).map(|(_, out)| out);
            prop_assert_eq!(streamed.is_ok(), inspected(&sealed).is_ok());
            if let Ok(out) = streamed {
                prop_assert_eq!(out, inspected(&sealed).unwrap());
            }
        }
    }
}
