//! Micro-batches from a consumer: each wake-up takes the delivery that woke
//! it plus every one already waiting, so one Redis script call and one round
//! of acks cover many messages.
//!
//! Apart from lapin so that its one subtle rule is unit-tested without a
//! broker: a lapin consumer says it was cancelled once, with one end-of-stream
//! item, and polled again it waits for a delivery that never comes. An end
//! read while filling a batch is therefore remembered, or a drain whose
//! cancel arrived behind a batch of reports would never finish.

use futures::{FutureExt, Stream, StreamExt};

/// A stream of deliveries read as batches of at most `max` items.
pub struct Batches<S> {
    stream: S,
    max: usize,
    /// The stream's end was read while taking the last batch.
    ended: bool,
}

impl<S, T, E> Batches<S>
where
    S: Stream<Item = Result<T, E>> + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    /// Reads `stream` in batches of at most `max` (at least 1) items.
    pub fn new(stream: S, max: usize) -> Self {
        Self {
            stream,
            max: max.max(1),
            ended: false,
        }
    }

    /// Waits for the next delivery, then takes every one already waiting.
    /// `None` once the stream has ended; an error (the channel closed) fails
    /// the whole batch, whose unacked deliveries the broker redelivers.
    pub async fn next(&mut self) -> Option<anyhow::Result<Vec<T>>> {
        if self.ended {
            return None;
        }
        let mut items = match self.stream.next().await? {
            Ok(first) => vec![first],
            Err(e) => return Some(Err(e.into())),
        };
        while items.len() < self.max {
            match self.stream.next().now_or_never() {
                Some(Some(Ok(d))) => items.push(d),
                Some(Some(Err(e))) => return Some(Err(e.into())),
                Some(None) => {
                    self.ended = true;
                    break;
                }
                None => break,
            }
        }
        Some(Ok(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Item = Result<u32, std::io::Error>;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    #[test]
    fn a_batch_keeps_the_end_of_its_stream() {
        // The cancel's end-of-stream right behind three deliveries: read
        // while batching, it must end the batches (polled again, lapin waits).
        let mut ended = Batches::new(futures::stream::iter(vec![Item::Ok(1), Ok(2), Ok(3)]), 8);
        assert_eq!(block_on(ended.next()).unwrap().unwrap(), vec![1, 2, 3]);
        assert!(block_on(ended.next()).is_none());
        // More may come: the batch is what was ready, and the stream goes on.
        let open =
            futures::stream::iter(vec![Item::Ok(1), Ok(2)]).chain(futures::stream::pending());
        let mut open = Batches::new(open, 8);
        assert_eq!(block_on(open.next()).unwrap().unwrap(), vec![1, 2]);
        assert!(open.next().now_or_never().is_none(), "waits for more");
    }

    #[test]
    fn a_batch_stops_at_its_size_and_at_an_error() {
        let mut many = Batches::new(futures::stream::iter((0..1000).map(Item::Ok)), 256);
        assert_eq!(block_on(many.next()).unwrap().unwrap().len(), 256);
        assert_eq!(block_on(many.next()).unwrap().unwrap()[0], 256);
        let broken = std::io::Error::other("channel closed");
        let mut failing = Batches::new(futures::stream::iter(vec![Ok(0), Item::Err(broken)]), 8);
        let err = block_on(failing.next()).unwrap().unwrap_err();
        assert!(err.to_string().contains("channel closed"), "{err}");
    }

    #[test]
    fn an_empty_stream_has_no_batch() {
        let mut none = Batches::new(futures::stream::iter(Vec::<Item>::new()), 8);
        assert!(block_on(none.next()).is_none());
    }
}
