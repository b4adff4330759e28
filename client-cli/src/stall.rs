//! Why a wait is not moving: what a client can see of the namespace when
//! futures stay pending, turned into a sentence a user can act on.

/// What a client can see of the stack serving its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Schedulers consuming the submit queue.
    pub schedulers: u32,
    /// Worker reports waiting in the results queue.
    pub reports_waiting: u32,
    /// Workers with a heartbeat in the last 30 s.
    pub workers: usize,
}

/// A sentence saying why pending futures do not move, or `None` when the
/// stack looks able to make progress (the tasks may simply be long).
pub fn diagnose(namespace: &str, h: &Health) -> Option<String> {
    // Workers' heartbeats reach Redis through a scheduler: without one,
    // "no live worker" would be a guess.
    if h.schedulers == 0 {
        return Some(format!(
            "no scheduler serves namespace {namespace:?} ({} worker reports wait in its results queue): start warren-scheduler (or `warren up`)",
            h.reports_waiting
        ));
    }
    (h.workers == 0).then(|| {
        format!(
            "no live worker serves namespace {namespace:?}: start warren-worker (or `warren up`)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(schedulers: u32, reports_waiting: u32, workers: usize) -> Health {
        Health {
            schedulers,
            reports_waiting,
            workers,
        }
    }

    #[test]
    fn names_what_is_missing() {
        let no_scheduler = diagnose("ns", &health(0, 25, 2)).unwrap();
        assert!(no_scheduler.contains("no scheduler"), "{no_scheduler}");
        assert!(no_scheduler.contains("25 worker reports"), "{no_scheduler}");
        let no_worker = diagnose("ns", &health(1, 0, 0)).unwrap();
        assert!(no_worker.contains("no live worker"), "{no_worker}");
        assert!(
            diagnose("ns", &health(0, 0, 0))
                .unwrap()
                .contains("no scheduler serves")
        );
        assert_eq!(diagnose("ns", &health(1, 0, 2)), None);
    }
}
