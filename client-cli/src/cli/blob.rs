//! `warren result` of a value that is not JSON (a Python tuple, bytes, a
//! numpy array, a pickled object): it is stored by reference, so the CLI
//! shows a one-line description from the envelope's header
//! (`<numpy.ndarray int64 (5,), 40 bytes>`), or with `--raw` writes its raw
//! bytes. Nothing here loads the value: the header is only read for display,
//! and a pickle is never unpickled.

use std::io::Write;

use serde_json::Value;
use warren_client::Client;
use warren_core::envelope::Kind;
use warren_core::envelope_stream::Unframer;
use warren_core::store::blobs::BlobRef;
use warren_core::store::stream::BlobReader;

/// Shows `value` if it is a reference to a stored value (describing it, or
/// writing its bytes with `raw`); false if it is plain JSON, for the caller
/// to print. Either way the value is read as it arrives, never held whole:
/// a description needs only the envelope's head, and `--raw` writes each
/// chunk's frame bytes before reading the next.
pub async fn show(client: &Client, value: &Value, raw: bool) -> anyhow::Result<bool> {
    let Some(r) = BlobRef::from_json(value) else {
        if raw {
            anyhow::bail!("--raw: the value is JSON, not stored bytes; drop --raw to print it");
        }
        return Ok(false);
    };
    let mut reader = client.read_blob(&r).await?;
    let mut frames = Unframer::new();
    if raw {
        write_frames(&mut reader, &mut frames, std::io::stdout()).await?;
        return Ok(true);
    }
    while frames.header().is_none() {
        let Some(chunk) = reader.next_chunk().await? else {
            break;
        };
        frames.feed(&chunk)?;
    }
    let (Some(header), Some(kind)) = (frames.header(), frames.kind()) else {
        frames.finish()?;
        anyhow::bail!("value {} has no header", r.hash);
    };
    println!(
        "{}",
        describe(header, kind, frames.key_id().as_deref(), r.size)
    );
    Ok(true)
}

/// Writes the frames' bytes of the value `reader` reads to `out`, chunk by
/// chunk. The value is checked as it comes, so an error may come after
/// bytes were written: it then says they are not the value.
pub async fn write_frames(
    reader: &mut BlobReader,
    frames: &mut Unframer,
    out: impl Write,
) -> anyhow::Result<u64> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    let mut written = 0u64;
    let copied: anyhow::Result<()> = async {
        while let Some(chunk) = reader.next_chunk().await? {
            for piece in frames.feed(&chunk)? {
                out.write_all(piece)?;
                written += piece.len() as u64;
            }
        }
        frames.finish()?;
        out.flush()?;
        Ok(())
    }
    .await;
    match copied {
        Ok(()) => Ok(written),
        Err(e) if written > 0 => Err(e.context(format!(
            "the {written} bytes written before this are not the value: discard them"
        ))),
        Err(e) => Err(e),
    }
}

/// `<what, N bytes>`: the header's own description of the value (written by
/// the codec that made it), its size, and whether it is a signed pickle.
pub fn describe(header: &[u8], kind: Kind, key_id: Option<&str>, size: u64) -> String {
    let header: Value = serde_json::from_slice(header).unwrap_or_default();
    let what = header
        .get("describe")
        .and_then(Value::as_str)
        .unwrap_or("a value that is not JSON");
    // A header is shown, never trusted: no control characters reach the terminal.
    let what: String = what.chars().filter(|c| !c.is_control()).take(200).collect();
    let how = match (kind, key_id) {
        (Kind::Pickle, Some(id)) => format!(", pickled, signed by key {id}"),
        (Kind::Pickle, None) => ", pickled, unsigned".to_string(),
        (Kind::Data, _) => String::new(),
    };
    format!("<{what}, {size} bytes{how}; read it from Python, or `warren result --raw KEY > FILE`>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_core::envelope;
    use warren_core::signing::{Key, Keyring};

    #[test]
    fn a_value_is_described_by_its_header_without_being_loaded() {
        let header = br#"{"v":1,"codec":"data","describe":"numpy.ndarray int64 (5,)"}"#;
        let sealed = envelope::seal(Kind::Data, "value", header, &[&[0u8; 40]], None).unwrap();
        let parsed = envelope::inspect(&sealed).unwrap();
        let key_id = parsed.key_id.as_deref();
        assert_eq!(
            describe(&sealed[parsed.header.clone()], parsed.kind, key_id, 99),
            "<numpy.ndarray int64 (5,), 99 bytes; read it from Python, or `warren result --raw KEY > FILE`>"
        );
        let ring = Keyring::new(Key::from_bytes([3; 32]), None);
        let evil = br#"{"describe":"x\u001b[2Jy"}"#;
        let pickle = envelope::seal(Kind::Pickle, "value", evil, &[b"p"], Some(&ring)).unwrap();
        let parsed = envelope::inspect(&pickle).unwrap();
        let key_id = parsed.key_id.as_deref();
        let shown = describe(&pickle[parsed.header.clone()], parsed.kind, key_id, 1);
        assert!(
            shown.starts_with("<x[2Jy, 1 bytes, pickled, signed by key "),
            "{shown}"
        );
    }
}
