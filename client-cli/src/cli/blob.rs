//! `warren result` of a value that is not JSON (a Python tuple, bytes, a
//! numpy array, a pickled object): it is stored by reference, so the CLI
//! shows a one-line description from the envelope's header
//! (`<numpy.ndarray int64 (5,), 40 bytes>`), or with `--raw` writes its raw
//! bytes. Nothing here loads the value: the header is only read for display,
//! and a pickle is never unpickled.

use std::io::Write;

use serde_json::Value;
use warren_client::Client;
use warren_core::envelope::{self, Kind};
use warren_core::store::blobs::BlobRef;

/// Shows `value` if it is a reference to a stored value (describing it, or
/// writing its bytes with `raw`); false if it is plain JSON, for the caller
/// to print.
pub async fn show(client: &Client, value: &Value, raw: bool) -> anyhow::Result<bool> {
    let Some(r) = BlobRef::from_json(value) else {
        if raw {
            anyhow::bail!("--raw: the value is JSON, not stored bytes; drop --raw to print it");
        }
        return Ok(false);
    };
    let bytes = client.get_blob(&r).await?;
    let parsed = envelope::inspect(&bytes)?;
    if raw {
        let mut out = std::io::stdout().lock();
        for f in &parsed.frames {
            out.write_all(&bytes[f.clone()])?;
        }
        out.flush()?;
        return Ok(true);
    }
    println!("{}", describe(&bytes, &parsed, r.size));
    Ok(true)
}

/// `<what, N bytes>`: the header's own description of the value (written by
/// the codec that made it), its size, and whether it is a signed pickle.
pub fn describe(bytes: &[u8], parsed: &envelope::Parsed, size: u64) -> String {
    let header: Value = serde_json::from_slice(&bytes[parsed.header.clone()]).unwrap_or_default();
    let what = header
        .get("describe")
        .and_then(Value::as_str)
        .unwrap_or("a value that is not JSON");
    // A header is shown, never trusted: no control characters reach the terminal.
    let what: String = what.chars().filter(|c| !c.is_control()).take(200).collect();
    let how = match (parsed.kind, &parsed.key_id) {
        (Kind::Pickle, Some(id)) => format!(", pickled, signed by key {id}"),
        (Kind::Pickle, None) => ", pickled, unsigned".to_string(),
        (Kind::Data, _) => String::new(),
    };
    format!("<{what}, {size} bytes{how}; read it from Python, or `warren result --raw KEY > FILE`>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_core::signing::{Key, Keyring};

    #[test]
    fn a_value_is_described_by_its_header_without_being_loaded() {
        let header = br#"{"v":1,"codec":"data","describe":"numpy.ndarray int64 (5,)"}"#;
        let sealed = envelope::seal(Kind::Data, "value", header, &[&[0u8; 40]], None).unwrap();
        let parsed = envelope::inspect(&sealed).unwrap();
        assert_eq!(
            describe(&sealed, &parsed, 99),
            "<numpy.ndarray int64 (5,), 99 bytes; read it from Python, or `warren result --raw KEY > FILE`>"
        );
        let ring = Keyring::new(Key::from_bytes([3; 32]), None);
        let evil = br#"{"describe":"x\u001b[2Jy"}"#;
        let pickle = envelope::seal(Kind::Pickle, "value", evil, &[b"p"], Some(&ring)).unwrap();
        let parsed = envelope::inspect(&pickle).unwrap();
        let shown = describe(&pickle, &parsed, 1);
        assert!(
            shown.starts_with("<x[2Jy, 1 bytes, pickled, signed by key "),
            "{shown}"
        );
    }
}
