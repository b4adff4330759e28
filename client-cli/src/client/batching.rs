//! How submissions become submit messages: pure rules, tested without a broker.
//!
//! Submissions leave in the order they were made. Consecutive ones of the same
//! kind (detached or not) share messages of at most a chunk of tasks; a message
//! whose encoding is over `max_payload_bytes` is halved until it fits, so a
//! map of big arguments is sent in smaller messages, and only a single task
//! too big alone is an error (naming it).

/// The next submit message: how many tasks it carries and its encoding.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Batch {
    /// The first `n` tasks, encoded as `body`.
    Fits {
        /// Tasks it carries.
        n: usize,
        /// The encoded message.
        body: Vec<u8>,
    },
    /// The first task alone is `size` bytes encoded: over the limit.
    TooLarge {
        /// Its encoded size.
        size: usize,
    },
}

/// The largest prefix of `pending` tasks (at most `max`, halving) whose
/// message, as `encode` makes it from the first `n`, fits `limit` bytes.
pub(crate) fn next_batch<E>(
    pending: usize,
    max: usize,
    limit: usize,
    mut encode: impl FnMut(usize) -> Result<Vec<u8>, E>,
) -> Result<Batch, E> {
    let mut n = pending.min(max).max(1);
    loop {
        let body = encode(n)?;
        if body.len() <= limit {
            return Ok(Batch::Fits { n, body });
        }
        if n == 1 {
            return Ok(Batch::TooLarge { size: body.len() });
        }
        n /= 2;
    }
}

/// Splits `items` into maximal runs of equal `kind`, in order.
pub(crate) fn runs<T, K: PartialEq>(items: &[T], kind: impl Fn(&T) -> K) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = items;
    while let Some(first) = rest.first() {
        let k = kind(first);
        let n = rest.iter().take_while(|t| kind(t) == k).count();
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of `n` tasks of 100 bytes each, with a 10-byte envelope.
    fn encode(n: usize) -> Result<Vec<u8>, ()> {
        Ok(vec![0; 10 + 100 * n])
    }

    #[test]
    fn a_batch_takes_a_chunk_when_it_fits() {
        assert_eq!(
            next_batch(5000, 1000, usize::MAX, encode),
            Ok(Batch::Fits {
                n: 1000,
                body: vec![0; 100_010]
            })
        );
        assert!(matches!(
            next_batch(3, 1000, 10_000, encode),
            Ok(Batch::Fits { n: 3, .. })
        ));
    }

    #[test]
    fn an_oversized_batch_is_halved_until_it_fits() {
        // 1000 tasks = 100,010 bytes; 31 fit in 3,200 (1000 → 500 → ... → 31).
        let Ok(Batch::Fits { n, body }) = next_batch(1000, 1000, 3_200, encode) else {
            panic!("expected a batch that fits");
        };
        assert_eq!(n, 31);
        assert!(body.len() <= 3_200);
    }

    #[test]
    fn a_single_task_over_the_limit_is_too_large_naming_its_size() {
        assert_eq!(
            next_batch(4, 1000, 50, encode),
            Ok(Batch::TooLarge { size: 110 })
        );
    }

    #[test]
    fn an_encoding_error_stops_the_batch() {
        let failing = |_n: usize| -> Result<Vec<u8>, &str> { Err("not JSON") };
        assert_eq!(next_batch(4, 10, 50, failing), Err("not JSON"));
    }

    #[test]
    fn runs_keep_order_and_group_only_neighbours() {
        let items = [(1, false), (2, false), (3, true), (4, false)];
        let grouped: Vec<Vec<i32>> = runs(&items, |t| t.1)
            .iter()
            .map(|r| r.iter().map(|t| t.0).collect())
            .collect();
        assert_eq!(grouped, vec![vec![1, 2], vec![3], vec![4]]);
        assert!(runs(&[] as &[(i32, bool)], |t| t.1).is_empty());
    }
}
