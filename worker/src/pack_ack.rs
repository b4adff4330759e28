//! The acknowledgement of one work message, shared by the tasks it carries
//! (a pack holds several): the message is answered once, when every task of
//! it is, by an ack or (a drain gave it back) a requeue ([`crate::drain::Pack`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};

use crate::drain::{self, Answer, Pack};

/// The acknowledgement of one work message, shared by the tasks it carries (a
/// pack holds several): the message is acked once every one is answered.
pub(crate) struct PackAck {
    pack: Mutex<Pack>,
    acker: Acker,
    /// The worker's count of messages not yet answered (a drain waits for 0).
    unanswered: Arc<AtomicUsize>,
}

impl PackAck {
    pub(crate) fn new(acker: Acker, tasks: usize, unanswered: &Arc<AtomicUsize>) -> Arc<Self> {
        unanswered.fetch_add(1, Ordering::SeqCst);
        Arc::new(Self {
            pack: Mutex::new(Pack::new(tasks)),
            acker,
            unanswered: unanswered.clone(),
        })
    }

    /// Whether a task of this message may start (see [`Pack::before_start`]).
    pub(crate) fn before_start(&self, draining: bool) -> drain::Start {
        self.pack
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .before_start(draining)
    }

    /// The message's channel is gone (a lost connection): the broker has
    /// given it back to the queue, so this copy must not start.
    pub(crate) fn stale(&self) -> bool {
        self.acker.poisoned()
    }

    /// One task of the message is answered (its outcome confirmed, or it was
    /// skipped); the last one acks the message.
    pub(crate) async fn answered(&self) -> lapin::Result<()> {
        let answer = self
            .pack
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .answered();
        let sent = match answer {
            Answer::NotYet => return Ok(()),
            Answer::Ack => self.acker.ack(BasicAckOptions::default()).await,
            Answer::Requeue => {
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                };
                self.acker.nack(requeue).await
            }
        };
        self.unanswered.fetch_sub(1, Ordering::SeqCst);
        sent.map(drop)
    }
}
