//! Every Redis key name of a namespace, built in one place.
//!
//! The Lua scripts build the same names from the prefix they are given (see
//! `lua/common.lua`); this type is the Rust side of that layout, so a grep for
//! a key's name lands here and in the scripts, nowhere else.

use std::fmt;

/// The key names of one namespace (`P` = `<namespace>:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
    namespace: String,
}

impl Keys {
    /// The keys of `namespace` on a single Redis.
    pub fn new(namespace: &str) -> Self {
        Self {
            prefix: format!("{namespace}:"),
            namespace: namespace.to_string(),
        }
    }

    /// The keys of `namespace` on a Redis Cluster: `P` = `{<namespace>}:`,
    /// a hash tag, so that every key of the namespace is in one slot.
    pub fn tagged(namespace: &str) -> Self {
        Self {
            prefix: format!("{{{namespace}}}:"),
            namespace: namespace.to_string(),
        }
    }

    /// The namespace these keys belong to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `P`: what every key of the namespace starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P t:<key>`: a task's record.
    pub fn task(&self, key: &str) -> String {
        format!("{}t:{key}", self.prefix)
    }

    /// `P outbox:<queue>`: runnable tasks not yet published to `queue`.
    pub fn outbox(&self, queue: &str) -> String {
        format!("{}outbox:{queue}", self.prefix)
    }

    /// `P claimed:<list>`: outbox entries a scheduler is publishing.
    pub fn claimed(&self, list: &str) -> String {
        format!("{}claimed:{list}", self.prefix)
    }

    /// `P sched:<scheduler>`: a scheduler's heartbeat.
    pub fn scheduler(&self, id: &str) -> String {
        format!("{}sched:{id}", self.prefix)
    }

    /// `P claimants`: the claim lists in use.
    pub fn claimants(&self) -> String {
        self.named("claimants")
    }

    /// `P layout`: the layout's version.
    pub fn layout(&self) -> String {
        self.named("layout")
    }

    /// The key every script declares (`P layout`): on a Redis Cluster it
    /// routes the script to the namespace's slot, whose keys the script
    /// builds from the prefix.
    pub fn anchor(&self) -> String {
        self.layout()
    }

    /// `P index`: every task record, scored by its expiry.
    pub fn index(&self) -> String {
        self.named("index")
    }

    /// `P delayed`: tasks that wait for their due time, scored by it (ms).
    pub fn delayed(&self) -> String {
        self.named("delayed")
    }

    /// `P rate_limits`: rate limits by `func:<name>` / `queue:<name>`.
    pub fn rate_limits(&self) -> String {
        self.named("rate_limits")
    }

    /// `P concurrency_limits`: the most running tasks per concurrency key
    /// or `prefix*` pattern.
    pub fn concurrency_limits(&self) -> String {
        self.named("concurrency_limits")
    }

    /// `P running:<key>`: tasks of concurrency key `key` holding a slot.
    pub fn running(&self, key: &str) -> String {
        format!("{}running:{key}", self.prefix)
    }

    /// `P schedules`: periodic schedules by name.
    pub fn schedules(&self) -> String {
        self.named("schedules")
    }

    /// `P schedule_next`: each active schedule's next tick (ms).
    pub fn schedule_next(&self) -> String {
        self.named("schedule_next")
    }

    /// `P runs:<name>`: the keys of a schedule's latest runs.
    pub fn runs(&self, name: &str) -> String {
        format!("{}runs:{name}", self.prefix)
    }

    /// `P epoch`: bumped by every restart.
    pub fn epoch(&self) -> String {
        self.named("epoch")
    }

    /// `P queues`: the work queues in use.
    pub fn queues(&self) -> String {
        self.named("queues")
    }

    /// `P stats`: the namespace's counters.
    pub fn stats(&self) -> String {
        self.named("stats")
    }

    /// `P recent_errors`: the last errors that started in a task.
    pub fn recent_errors(&self) -> String {
        self.named("recent_errors")
    }

    /// `P coord:<kind>:<name>`: a coordination primitive's state (a
    /// `Variable`, `Queue`, `Event`, `Lock` or `Semaphore` of the Python
    /// client; see `store::coordination`).
    pub fn coordination(&self, kind: &str, name: &str) -> String {
        format!("{}coord:{kind}:{name}", self.prefix)
    }

    /// `P logs:<key>`: what a program task wrote (for `warren logs`).
    pub fn logs(&self, key: &str) -> String {
        format!("{}logs:{key}", self.prefix)
    }

    /// `P output:<key>`: the pub/sub channel of what task `key` prints
    /// while it runs.
    pub fn output(&self, key: &str) -> String {
        format!("{}output:{key}", self.prefix)
    }

    /// `P run:<id>`: each worker's outcome of a client's `run` (a hash,
    /// worker → `{"ok": value}` or `{"error": failure}`).
    pub fn run(&self, id: &str) -> String {
        format!("{}run:{id}", self.prefix)
    }

    /// `P broker_max_message_size`: RabbitMQ's message size limit, as a
    /// refused publish told it (see `message_limit`).
    pub fn broker_limit(&self) -> String {
        self.named("broker_max_message_size")
    }

    /// `P blob:<hash>`: a value that is not JSON, stored by reference.
    pub fn blob(&self, hash: &str) -> String {
        format!("{}blob:{hash}", self.prefix)
    }

    /// Who holds blob `hash` (see `lua/common.lua`).
    pub fn refs(&self, hash: &str) -> String {
        format!("{}refs:{hash}", self.prefix)
    }

    /// Blobs no record holds any more, scored by when (ms).
    pub fn doomed(&self) -> String {
        self.named("doomed")
    }

    /// `P workers`: each worker's last heartbeat.
    pub fn workers(&self) -> String {
        self.named("workers")
    }

    /// A SCAN pattern for keys starting with `P <head>`.
    pub fn pattern(&self, head: &str) -> String {
        format!("{}{head}*", self.prefix)
    }

    /// What follows `P <head>` in `key`, if it starts so.
    pub fn strip<'a>(&self, head: &str, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())?.strip_prefix(head)
    }

    fn named(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// Which claim list of a scheduler: one per dispatch window in flight, and one
/// per eager window of its intake (tasks `complete.lua` claimed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimSlot {
    /// The dispatcher's window `n` (its claims cycle through the windows).
    Dispatch(u8),
    /// The intake's eager window `n`.
    Eager(u8),
}

/// The name of one claim list: `<scheduler>#<n>` for a dispatch window,
/// `<scheduler>#e<n>` for an eager one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimList(String);

/// Separates a scheduler's id from its window in a claim list's name.
pub const CLAIM_SEPARATOR: char = '#';

impl ClaimList {
    /// Scheduler `scheduler`'s list for `slot`.
    pub fn new(scheduler: &str, slot: ClaimSlot) -> Self {
        Self(match slot {
            ClaimSlot::Dispatch(n) => format!("{scheduler}{CLAIM_SEPARATOR}{n}"),
            ClaimSlot::Eager(n) => format!("{scheduler}{CLAIM_SEPARATOR}e{n}"),
        })
    }

    /// The list's name, as the scripts take it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The scheduler that owns the list (whose heartbeat keeps it claimed).
    pub fn scheduler(&self) -> &str {
        self.0
            .rsplit_once(CLAIM_SEPARATOR)
            .map_or(self.0.as_str(), |(id, _)| id)
    }
}

impl fmt::Display for ClaimList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_layout_table() {
        let k = Keys::new("ns");
        assert_eq!(k.task("inc-1"), "ns:t:inc-1");
        assert_eq!(k.outbox("gpu"), "ns:outbox:gpu");
        assert_eq!(k.claimed("s#0"), "ns:claimed:s#0");
        assert_eq!(k.scheduler("s"), "ns:sched:s");
        assert_eq!(k.claimants(), "ns:claimants");
        assert_eq!(k.index(), "ns:index");
        assert_eq!(k.pattern("t:"), "ns:t:*");
        assert_eq!(k.strip("t:", "ns:t:inc-1"), Some("inc-1"));
        assert_eq!(k.strip("t:", "other:t:inc-1"), None);
        let c = Keys::tagged("ns");
        assert_eq!(c.task("inc-1"), "{ns}:t:inc-1");
        assert_eq!(c.anchor(), "{ns}:layout");
        assert_eq!(c.strip("t:", "{ns}:t:inc-1"), Some("inc-1"));
    }

    #[test]
    fn claim_lists_name_their_window_and_their_scheduler() {
        let d = ClaimList::new("host:12:ab", ClaimSlot::Dispatch(1));
        let e = ClaimList::new("host:12:ab", ClaimSlot::Eager(0));
        assert_eq!(d.as_str(), "host:12:ab#1");
        assert_eq!(e.as_str(), "host:12:ab#e0");
        assert_eq!(d.scheduler(), "host:12:ab");
        assert_eq!(e.scheduler(), "host:12:ab");
    }
}
