//! Signed messages: a MAC on every message that causes an effect.
//!
//! Without it, anyone who can publish in the vhost can set the value of any
//! unfinished task with a forged report, send a work message straight to a
//! worker past every scheduler check, broadcast `Restart`, or answer a
//! client. With a namespace key configured (`key_file`, the key that also
//! signs Python code and values, see [`crate::signing`]), every publisher
//! adds two headers, the signing key's id and a MAC (keyed BLAKE3, see `signing`) over the
//! namespace, the message family, the body and its `reply_to`, and every
//! receiver checks them before anything else: a message that fails is
//! dead-lettered (or, where there is no dead-letter queue, dropped) with the
//! reason, and changes nothing. Unsigned messages are refused wherever a key
//! is configured; a previous key is accepted while keys rotate.
//!
//! The family is under the MAC, so a signed report cannot be replayed as a
//! submit; the namespace too, so two namespaces sharing a key file cannot
//! replay each other's messages. Pure: tested without a broker.

use std::sync::Arc;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, LongString, ShortString};

use crate::signing::{Keyring, hex};

/// The header naming the key that signed a message.
pub const KEY_HEADER: &str = "x-warren-key";
/// The header holding a message's MAC (hex).
pub const MAC_HEADER: &str = "x-warren-mac";

/// What a message is, as its MAC says: the same bytes signed as one family
/// are refused as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Client requests (`<ns>.submit`).
    Submit,
    /// Runnable tasks (`<ns>.work.<queue>`, and their dead letters in `<ns>.killed`).
    Work,
    /// Worker reports (`<ns>.results`).
    Report,
    /// Scheduler broadcasts (`<ns>.control`).
    Control,
    /// Client events (reply queues).
    Events,
}

impl Family {
    fn purpose(self) -> &'static str {
        match self {
            Family::Submit => "msg/submit",
            Family::Work => "msg/work",
            Family::Report => "msg/report",
            Family::Control => "msg/control",
            Family::Events => "msg/events",
        }
    }
}

/// Signs and checks the messages of one namespace (cheap to clone). With no
/// key it signs nothing and accepts everything, as warren did before keys.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    keys: Option<Arc<Keyring>>,
    namespace: String,
}

impl Auth {
    /// The messages of `namespace`, signed with `keys` if any.
    pub fn new(keys: Option<Keyring>, namespace: &str) -> Self {
        Self {
            keys: keys.map(Arc::new),
            namespace: namespace.to_string(),
        }
    }

    /// Whether messages are signed and checked.
    pub fn enabled(&self) -> bool {
        self.keys.is_some()
    }

    fn parts<'a>(&'a self, body: &'a [u8], reply_to: &'a str) -> [&'a [u8]; 3] {
        [self.namespace.as_bytes(), body, reply_to.as_bytes()]
    }

    /// `props` with the key id and MAC of `body` as `family` (unchanged
    /// without a key).
    pub fn sign(&self, family: Family, body: &[u8], props: BasicProperties) -> BasicProperties {
        let Some(keys) = &self.keys else {
            return props;
        };
        let reply_to = props
            .reply_to()
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        let (id, mac) = keys.sign(family.purpose(), &self.parts(body, &reply_to));
        let mut table = props.headers().clone().unwrap_or_default();
        table.insert(
            ShortString::from(KEY_HEADER),
            AMQPValue::LongString(LongString::from(hex(&id))),
        );
        table.insert(
            ShortString::from(MAC_HEADER),
            AMQPValue::LongString(LongString::from(hex(&mac))),
        );
        props.with_headers(table)
    }

    /// Checks `body` and `props` as a message of `family`: the reason it is
    /// refused, if it is. Without a key, everything passes.
    pub fn check(
        &self,
        family: Family,
        body: &[u8],
        props: &BasicProperties,
    ) -> Result<(), String> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        let header = |name: &str| -> Option<Vec<u8>> {
            let table = props.headers().as_ref()?;
            match table.inner().get(name)? {
                AMQPValue::LongString(s) => unhex(&String::from_utf8_lossy(s.as_bytes())),
                _ => None,
            }
        };
        let (Some(id), Some(mac)) = (header(KEY_HEADER), header(MAC_HEADER)) else {
            return Err(format!(
                "unsigned {} message: this namespace's processes hold its key, and refuse messages not signed with it",
                family.purpose().trim_start_matches("msg/")
            ));
        };
        let reply_to = props
            .reply_to()
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        keys.verify(family.purpose(), &self.parts(body, &reply_to), &id, &mac)
            .map_err(|e| {
                format!(
                    "{} message refused: {e}",
                    family.purpose().trim_start_matches("msg/")
                )
            })
    }
}

/// Bytes from lowercase or uppercase hex, if it is hex.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Key;

    fn auth(fill: u8, ns: &str) -> Auth {
        Auth::new(Some(Keyring::new(Key::from_bytes([fill; 32]), None)), ns)
    }

    fn with_reply(to: &str) -> BasicProperties {
        BasicProperties::default().with_reply_to(ShortString::from(to))
    }

    #[test]
    fn a_signed_message_passes_and_any_change_is_refused() {
        let a = auth(1, "ns");
        let props = a.sign(Family::Report, b"body", with_reply("ns.client.x"));
        assert_eq!(a.check(Family::Report, b"body", &props), Ok(()));
        assert!(a.check(Family::Report, b"bodY", &props).is_err());
        assert!(
            a.check(Family::Submit, b"body", &props).is_err(),
            "another family"
        );
        let moved = props
            .clone()
            .with_reply_to(ShortString::from("ns.client.y"));
        assert!(
            a.check(Family::Report, b"body", &moved).is_err(),
            "reply_to is signed"
        );
        assert!(
            auth(1, "other")
                .check(Family::Report, b"body", &props)
                .is_err()
        );
        let e = auth(2, "ns")
            .check(Family::Report, b"body", &props)
            .unwrap_err();
        assert!(e.contains("does not hold"), "{e}");
    }

    #[test]
    fn unsigned_messages_are_refused_only_where_a_key_is_held() {
        let e = auth(1, "ns")
            .check(Family::Control, b"x", &BasicProperties::default())
            .unwrap_err();
        assert!(e.starts_with("unsigned control message"), "{e}");
        let none = Auth::new(None, "ns");
        assert!(!none.enabled());
        assert_eq!(
            none.check(Family::Control, b"x", &BasicProperties::default()),
            Ok(())
        );
        let props = none.sign(Family::Control, b"x", BasicProperties::default());
        assert!(props.headers().is_none(), "no key, no headers");
    }

    #[test]
    fn a_previous_key_is_accepted_while_keys_rotate() {
        let old = auth(1, "ns");
        let props = old.sign(Family::Work, b"w", BasicProperties::default());
        let rotating = Auth::new(
            Some(Keyring::new(
                Key::from_bytes([2; 32]),
                Some(Key::from_bytes([1; 32])),
            )),
            "ns",
        );
        assert_eq!(rotating.check(Family::Work, b"w", &props), Ok(()));
        assert!(auth(2, "ns").check(Family::Work, b"w", &props).is_err());
    }

    #[test]
    fn odd_headers_are_refused_not_panicked_on() {
        assert_eq!(unhex("0aFF"), Some(vec![10, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
        let a = auth(1, "ns");
        let mut table = lapin::types::FieldTable::default();
        table.insert(ShortString::from(KEY_HEADER), AMQPValue::Boolean(true));
        table.insert(
            ShortString::from(MAC_HEADER),
            AMQPValue::LongString(LongString::from("nothex")),
        );
        let props = BasicProperties::default().with_headers(table);
        assert!(a.check(Family::Work, b"w", &props).is_err());
    }
}
