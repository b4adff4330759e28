use super::*;
use crate::envelope::seal;

/// Envelopes the Python package sealed (`_envelopes.seal(v, keys, "value",
/// ...)` with no key): `b"abc"` and `numpy.arange(3, dtype="<i4")`. The
/// two sides must agree on these bytes, not only each with itself.
/// Version 3 (the package of session 30); the `_V2` ones are the same
/// values as the package sealed them before, which must still decode.
const PY_BYTES: &str = "57524e4503000576616c756500000000000000004a0000007b2276223a312c22636f646563223a2264617461222c22726f6f74223a7b222474223a226279746573222c2266223a307d2c226465736372696265223a226279746573206f662033227d010000000300000000000000616263";
const PY_ARRAY: &str = "57524e4503000576616c75650000000000000000740000007b2276223a312c22636f646563223a2264617461222c22726f6f74223a7b222474223a226e646172726179222c226474797065223a223c6934222c227368617065223a5b335d2c2266223a307d2c226465736372696265223a226e756d70792e6e64617272617920696e7433322028332c29227d010000000c00000000000000000000000100000002000000";
const PY_BYTES_V2: &str = "57524e4502000576616c756500000000000000004a0000007b2276223a312c22636f646563223a2264617461222c22726f6f74223a7b222474223a226279746573222c2266223a307d2c226465736372696265223a226279746573206f662033227d010000000300000000000000616263";
const PY_ARRAY_V2: &str = "57524e4502000576616c75650000000000000000740000007b2276223a312c22636f646563223a2264617461222c22726f6f74223a7b222474223a226e646172726179222c226474797065223a223c6934222c227368617065223a5b335d2c2266223a307d2c226465736372696265223a226e756d70792e6e64617272617920696e7433322028332c29227d010000000c00000000000000000000000100000002000000";

fn unhex(s: &str) -> Bytes {
    Bytes::from(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>(),
    )
}

#[test]
fn pythons_bytes_and_arrays_decode_and_encode_to_the_same_bytes() {
    let b = decode(unhex(PY_BYTES), None).unwrap();
    assert_eq!((b.as_bytes(), b.array_info()), (&b"abc"[..], None));
    assert_eq!(encode(&b).unwrap(), unhex(PY_BYTES));
    let a = decode(unhex(PY_ARRAY), None).unwrap();
    assert_eq!(a.dtype(), Some("<i4"));
    assert_eq!(a.shape(), Some(&[3u64][..]));
    assert_eq!(a.as_bytes(), &[0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
    assert_eq!(a.describe(), "numpy.ndarray int32 (3,)");
    assert_eq!(encode(&a).unwrap(), unhex(PY_ARRAY));
}

#[test]
fn values_sealed_before_version_3_still_decode() {
    for (old, new) in [(PY_BYTES_V2, PY_BYTES), (PY_ARRAY_V2, PY_ARRAY)] {
        assert_eq!(
            decode(unhex(old), None).unwrap(),
            decode(unhex(new), None).unwrap()
        );
    }
}

#[test]
fn every_form_round_trips() {
    let cases = [
        Binary::new(Vec::new()),
        Binary::new(vec![0u8, 255, 10]),
        Binary::array(vec![0u8; 48], "<f8", vec![2, 3]).unwrap(),
        Binary::array(Vec::new(), "<i8", vec![0]).unwrap(),
        Binary::array(vec![1u8], "|b1", vec![]).unwrap(),
        Binary::array(vec![7u8; 4], "|u1", vec![2, 2]).unwrap(),
    ];
    for b in cases {
        let envelope = Bytes::from(encode(&b).unwrap());
        assert_eq!(decode(envelope, None).unwrap(), b, "{}", b.describe());
    }
}

#[test]
fn descriptions_read_like_pythons() {
    assert_eq!(Binary::new(vec![1u8; 5]).describe(), "bytes of 5");
    let a = Binary::array(vec![0u8; 48], "<f8", vec![2, 3]).unwrap();
    assert_eq!(a.describe(), "numpy.ndarray float64 (2, 3)");
    let c = Binary::array(vec![0u8; 16], "<c16", vec![1]).unwrap();
    assert_eq!(c.describe(), "numpy.ndarray complex128 (1,)");
}

#[test]
fn an_array_that_does_not_fit_its_buffer_is_refused_naming_both() {
    let e = Binary::array(vec![0u8; 10], "<f8", vec![2]).unwrap_err();
    assert!(e.0.contains("needs 16 bytes, not 10"), "{e}");
    let e = Binary::array(vec![0u8; 8], "<U1", vec![2]).unwrap_err();
    assert!(e.0.contains("not a number type"), "{e}");
    let e = Binary::array(vec![], "<f8", vec![u64::MAX, 2]).unwrap_err();
    assert!(e.0.contains("more than 2**64"), "{e}");
}

fn data(header: &str, frames: &[&[u8]]) -> Bytes {
    Bytes::from(seal(Kind::Data, VALUE_PURPOSE, header.as_bytes(), frames, None).unwrap())
}

#[test]
fn other_values_are_errors_naming_what_they_are() {
    let tuple = data(
        r#"{"v":1,"codec":"data","root":{"$t":"tuple","v":[]},"describe":"tuple of 0"}"#,
        &[],
    );
    let e = decode(tuple, None).unwrap_err();
    assert_eq!(e.0, "the value is tuple of 0, not bytes or a numpy array");
    // A pickle is refused before its header is read, key or no key.
    let keys = crate::signing::Keyring::new(crate::signing::Key::from_bytes([7; 32]), None);
    let pickle = seal(
        Kind::Pickle,
        VALUE_PURPOSE,
        br#"{"v":1,"codec":"pickle","describe":"x.Y"}"#,
        &[b"\x80\x05."],
        Some(&keys),
    )
    .unwrap();
    let e = decode(Bytes::from(pickle.clone()), None).unwrap_err();
    assert!(e.0.contains("no key"), "{e}");
    let e = decode(Bytes::from(pickle), Some(&keys)).unwrap_err();
    assert!(e.0.contains("x.Y, not bytes"), "{e}");
    // Sealed for another purpose.
    let call = seal(Kind::Data, "call", b"{}", &[], None).unwrap();
    assert!(decode(Bytes::from(call), None).is_err());
}

#[test]
fn headers_that_lie_are_errors() {
    let cases = [
        r#"{"v":1,"codec":"data","root":{"$t":"bytes","f":1}}"#,
        r#"{"v":1,"codec":"data","root":{"$t":"bytes"}}"#,
        r#"{"v":1,"codec":"data","root":{"$t":"ndarray","dtype":"<f8","shape":[2],"f":0}}"#,
        r#"{"v":1,"codec":"data","root":{"$t":"ndarray","dtype":"<f8","shape":[-1],"f":0}}"#,
        r#"{"v":1,"codec":"data","root":{"$t":"ndarray","dtype":"<f8","f":0}}"#,
        r#"{"v":1,"codec":"data","root":{"$t":"ndarray","dtype":"","shape":[],"f":0}}"#,
        r#"{"v":1,"codec":"data","root":{"$t":"ndarray","dtype":"<f8","shape":[4294967296,4294967296],"f":0}}"#,
        r#"{"v":1,"codec":"data"}"#,
        r#"not json"#,
    ];
    for h in cases {
        assert!(decode(data(h, &[b"abc"]), None).is_err(), "{h}");
    }
}

#[test]
fn hostile_bytes_are_errors_never_panics() {
    let good = encode(&Binary::array(vec![1u8; 24], "<f8", vec![3]).unwrap()).unwrap();
    // Every truncation, and every byte flipped in turn.
    for n in 0..good.len() {
        let _ = decode(Bytes::copy_from_slice(&good[..n]), None);
    }
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0xff;
        let _ = decode(Bytes::from(bad), None);
    }
}
