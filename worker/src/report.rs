//! Reporting outcomes: batched, confirmed, then acked.
//!
//! Order matters for "nothing lost": a work message is acked only after the
//! outcome it produced is confirmed by RabbitMQ on the results queue. Outcomes
//! are batched: whatever finished while the previous report was being
//! confirmed goes in the next one, and while other tasks still run here a
//! report waits up to [`REPORT_LINGER`] for their outcomes too (the broker's
//! cost is per message). What goes in which message ([`Collected`],
//! [`Collected::messages`]) is pure and tested without a broker.

use std::sync::Arc;
use std::time::Duration;

use lapin::Channel;
use tracing::debug;
use warren_core::messages::{
    Outcome, PROTOCOL_VERSION, TaskFailure, TaskResult, WorkerInfo, WorkerReport,
};
use warren_core::msgauth::Family;
use warren_core::{amqp, sizing};

use crate::pack_ack::PackAck;
use crate::shared::Shared;

/// Reports sent at most in one message.
pub(crate) const REPORT_BATCH: usize = 512;
/// Room in a report message for its envelope and the worker's name.
const REPORT_ENVELOPE: usize = 1024;

/// The largest outcome a report of at most `max_message_bytes` can carry.
pub fn room_for_outcome(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_sub(REPORT_ENVELOPE)
}
/// How long a report waits for the outcomes of tasks still running here.
const REPORT_LINGER: Duration = Duration::from_millis(3);

/// Something for the reporter to publish; `A` answers the work message.
pub(crate) enum Report<A = Arc<PackAck>> {
    /// A task ended; answer its message once the outcome is confirmed.
    Done(Outcome, A),
    /// A task has been running for a while.
    Started(String),
    /// The worker is alive.
    Heartbeat(WorkerInfo),
}

/// Reports taken for one round of publishing.
pub(crate) struct Collected<A> {
    /// Outcomes, in the order their tasks ended.
    pub outcomes: Vec<Outcome>,
    /// What to answer once the outcomes are confirmed.
    pub answers: Vec<A>,
    /// Keys of tasks running for a while.
    pub started: Vec<String>,
    /// The newest heartbeat (older ones of the round say nothing more).
    pub beat: Option<WorkerInfo>,
    /// Reports taken.
    pub taken: usize,
}

impl<A> Default for Collected<A> {
    fn default() -> Self {
        Self {
            outcomes: Vec::new(),
            answers: Vec::new(),
            started: Vec::new(),
            beat: None,
            taken: 0,
        }
    }
}

impl<A> Collected<A> {
    /// Takes one report.
    pub fn take(&mut self, r: Report<A>) {
        self.taken += 1;
        match r {
            Report::Done(o, a) => {
                self.outcomes.push(o);
                self.answers.push(a);
            }
            Report::Started(k) => self.started.push(k),
            Report::Heartbeat(info) => self.beat = Some(info),
        }
    }

    /// Whether the round has room for more.
    pub fn has_room(&self) -> bool {
        self.taken < REPORT_BATCH
    }

    /// The messages to publish, heartbeat first; outcomes split so that no
    /// message is over `max_message_bytes` (one publish over the broker's
    /// limit would close the channel), answers left to the caller.
    pub fn messages(&mut self, worker: &str, max_message_bytes: usize) -> Vec<WorkerReport> {
        let mut out = Vec::new();
        if let Some(info) = self.beat.take() {
            out.push(WorkerReport::Heartbeat {
                v: PROTOCOL_VERSION,
                info,
            });
        }
        if !self.started.is_empty() {
            out.push(WorkerReport::Started {
                v: PROTOCOL_VERSION,
                worker: worker.to_string(),
                keys: std::mem::take(&mut self.started),
            });
        }
        let size = |o: &Outcome| sizing::json_len(o) + 1;
        let budget = max_message_bytes.saturating_sub(REPORT_ENVELOPE);
        // An outcome that cannot travel at all (the broker's limit, learned
        // after it ran, or a redelivery answered from memory) becomes its
        // task's error here: published as it is, it would be refused again
        // and again.
        let outcomes = std::mem::take(&mut self.outcomes)
            .into_iter()
            .map(|o| fitted(o, budget))
            .collect();
        for outcomes in sizing::split_by_bytes(outcomes, size, REPORT_BATCH, budget) {
            out.push(WorkerReport::Outcomes {
                v: PROTOCOL_VERSION,
                worker: worker.to_string(),
                outcomes,
            });
        }
        out
    }
}

/// `o`, or its task's `PayloadTooLarge` if it is over `budget` bytes.
fn fitted(o: Outcome, budget: usize) -> Outcome {
    let size = sizing::json_len(&o) + 1;
    if size <= budget {
        return o;
    }
    let message = format!(
        "the result of task {} is {size} bytes ({}), over the {budget} bytes a report may carry (RabbitMQ's max_message_size or setting max_message_bytes, less a report's envelope)",
        o.key,
        sizing::human_bytes(size)
    );
    Outcome {
        result: TaskResult::Err(TaskFailure::new("PayloadTooLarge", message, "")),
        ..o
    }
}

/// Publishes reports in rounds, then answers the work they report. Reports
/// that outlive their connection still go out (their acks fail harmlessly:
/// the broker already requeued those messages, and the runner answers the
/// redelivered copies from memory).
pub(crate) async fn report_loop(
    ch: Channel,
    results_queue: String,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let mut rx = shared.pending_reports.lock().await;
    let identity = &shared.identity;
    while let Some(first) = rx.recv().await {
        let mut round = Collected::default();
        round.take(first);
        while round.has_room() {
            match rx.try_recv() {
                Ok(r) => round.take(r),
                Err(_) => break,
            }
        }
        // While other tasks are running here, more outcomes are due soon:
        // wait a moment for them. A lone task is reported at once.
        let deadline = tokio::time::Instant::now() + REPORT_LINGER;
        while round.has_room() && shared.slots.busy() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => round.take(r),
                _ => break,
            }
        }
        let props = amqp::json_properties(&[("worker", identity)]);
        let mut confirms = Vec::new();
        for message in round.messages(identity, shared.topology.max_message_bytes()) {
            let body = serde_json::to_vec(&message)?;
            let signed = shared
                .topology
                .auth()
                .sign(Family::Report, &body, props.clone());
            confirms.push(amqp::publish(&ch, "", &results_queue, &body, signed).await?);
        }
        amqp::confirmed(confirms, &results_queue).await?;
        for a in round.answers {
            if let Err(e) = a.answered().await {
                debug!(error = %e, "ack on a closed channel; the redelivery will be answered from memory");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_core::messages::{TaskResult, WorkerInfo};

    fn done(key: &str, value: &str) -> Report<()> {
        let outcome = Outcome {
            key: key.into(),
            result: TaskResult::Ok(serde_json::json!(value)),
            attempt: 0,
        };
        Report::Done(outcome, ())
    }

    fn info(at_ms: u64) -> WorkerInfo {
        WorkerInfo {
            worker: "h:1".into(),
            host: "h".into(),
            pid: 1,
            concurrency: 2,
            queues: vec!["default".into()],
            running: vec![],
            completed: 0,
            at_ms,
            functions: None,
            commands: Vec::new(),
            draining: false,
        }
    }

    #[test]
    fn a_round_sends_the_newest_heartbeat_then_started_then_outcomes() {
        let mut round = Collected::default();
        round.take(Report::Heartbeat(info(1)));
        round.take(done("a", "x"));
        round.take(Report::Started("b".into()));
        round.take(Report::Heartbeat(info(2)));
        round.take(done("c", "y"));
        let messages = round.messages("h:1", 1 << 20);
        assert_eq!(messages.len(), 3);
        assert!(matches!(&messages[0], WorkerReport::Heartbeat { info, .. } if info.at_ms == 2));
        assert!(matches!(&messages[1], WorkerReport::Started { keys, .. } if keys == &["b"]));
        let WorkerReport::Outcomes { outcomes, .. } = &messages[2] else {
            panic!("outcomes last");
        };
        let keys: Vec<&str> = outcomes.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["a", "c"]);
        assert_eq!(round.answers.len(), 2);
    }

    #[test]
    fn big_outcomes_are_split_to_stay_under_the_message_limit() {
        let mut round = Collected::default();
        let big = "x".repeat(1000);
        for k in ["a", "b", "c"] {
            round.take(done(k, &big));
        }
        // Room for about two outcomes of ~1,050 bytes after the envelope.
        let messages = round.messages("h:1", REPORT_ENVELOPE + 2200);
        let sizes: Vec<usize> = messages
            .iter()
            .map(|m| match m {
                WorkerReport::Outcomes { outcomes, .. } => outcomes.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(sizes, [2, 1]);
    }

    #[test]
    fn an_outcome_no_message_can_carry_becomes_its_tasks_error() {
        let mut round = Collected::default();
        round.take(done("big", &"x".repeat(5000)));
        round.take(done("small", "1"));
        let messages = round.messages("h:1", REPORT_ENVELOPE + 2000);
        let outcomes: Vec<&Outcome> = messages
            .iter()
            .flat_map(|m| match m {
                WorkerReport::Outcomes { outcomes, .. } => outcomes.iter().collect(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(outcomes.len(), 2);
        match &outcomes[0].result {
            TaskResult::Err(f) => {
                assert_eq!(f.kind, "PayloadTooLarge");
                assert!(f.message.contains("max_message_size"), "{}", f.message);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(outcomes[1].result, TaskResult::Ok(_)));
    }

    #[test]
    fn a_round_is_full_at_the_batch_size() {
        let mut round = Collected::<()>::default();
        for i in 0..REPORT_BATCH {
            assert!(round.has_room());
            round.take(Report::Started(i.to_string()));
        }
        assert!(!round.has_room());
        assert!(
            Collected::<()>::default()
                .messages("h:1", 1 << 20)
                .is_empty()
        );
    }
}
