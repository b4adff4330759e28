//! Message sizes: what fits in one RabbitMQ message, decided before publishing.
//!
//! RabbitMQ answers a publish over its `max_message_size` by closing the
//! channel, and every publish after it on that channel fails too. A dispatcher
//! that retried such a message would stop a whole namespace behind one big
//! task, so every publisher that carries users' values checks sizes first: a
//! single item that can never fit becomes its task's error, and batches are
//! split so that no message grows past the limit by adding up small items.

use std::io;

use serde::Serialize;

/// The length in bytes of `value`'s JSON text, without building it.
pub fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = Counter(0);
    // Writing to a counter cannot fail; a value that cannot serialize is
    // caught where it is really serialized.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Splits `items` (in order) into batches of at most `max_items` whose sizes
/// add up to at most `budget` bytes. An item bigger than the budget travels
/// alone: refusing it is the caller's decision, made before.
pub fn split_by_bytes<T>(
    items: Vec<T>,
    size: impl Fn(&T) -> usize,
    max_items: usize,
    budget: usize,
) -> Vec<Vec<T>> {
    let mut batches: Vec<Vec<T>> = Vec::new();
    let mut used = 0;
    for item in items {
        let n = size(&item);
        match batches.last_mut() {
            Some(last) if last.len() < max_items.max(1) && used + n <= budget => {
                used += n;
                last.push(item);
            }
            _ => {
                used = n;
                batches.push(vec![item]);
            }
        }
    }
    batches
}

/// Bytes as an operator reads them (`204.8 MB` is how RabbitMQ's error put
/// it; binary units match the settings' defaults).
pub fn human_bytes(n: usize) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n >= 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / MIB)
    } else if n >= 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_len_is_the_length_of_the_text() {
        for v in [
            json!(null),
            json!("héllo \"x\""),
            json!({"a": [1, 2.5, "c"]}),
        ] {
            assert_eq!(json_len(&v), serde_json::to_vec(&v).unwrap().len());
        }
    }

    #[test]
    fn batches_keep_order_and_stay_under_both_limits() {
        let sizes = vec![3, 3, 3, 9, 1, 1, 1, 1];
        let batches = split_by_bytes(sizes, |n| *n, 3, 7);
        assert_eq!(
            batches,
            vec![vec![3, 3], vec![3], vec![9], vec![1, 1, 1], vec![1]]
        );
    }

    #[test]
    fn an_oversized_item_travels_alone_and_nothing_is_dropped() {
        let batches = split_by_bytes(vec![1, 100, 1], |n| *n, 10, 10);
        assert_eq!(batches, vec![vec![1], vec![100], vec![1]]);
        assert!(split_by_bytes(Vec::<usize>::new(), |n| *n, 10, 10).is_empty());
    }

    #[test]
    fn bytes_read_as_an_operator_expects() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(204_800_145), "195.3 MiB");
    }
}
