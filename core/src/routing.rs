//! Which work queue a task goes to when its submitter names none.
//!
//! RabbitMQ hands each message of a queue to whichever consumer has room; it
//! cannot pick the worker that has the task's function. A fleet that mixes
//! kinds of worker (Rust workers, Python workers, workers that allow
//! programs) is therefore kept apart by queue, and each kind serves its own
//! by default, so no worker is handed a task it cannot run. The submitter's
//! check that a live worker serves the function (the client's `served`)
//! then speaks of the same queue.

use crate::messages::default_queue;

/// The queue Python workers serve unless told otherwise.
pub const PYTHON_QUEUE: &str = "python";

/// The function of tasks whose Python function travels as signed code
/// (cloudpickle): only Python workers started with `--accept-code` (and the
/// namespace key) register it, so a worker that does not accept code is
/// never handed one, and the client refuses such a task when none serves it.
pub const CODE_FUNC: &str = "warren:call";

/// The function of a future that is a value put as it is (`client.scatter`):
/// `submit.lua` records it finished at once, with its one argument as its
/// value; no worker runs it.
pub const VALUE_FUNC: &str = "warren:value";

/// The queue of [`CODE_FUNC`] tasks: its own, served only by workers that
/// accept code, since RabbitMQ cannot keep a task from the workers of its
/// queue that would refuse it.
pub const CODE_QUEUE: &str = "code";

/// The queue of `func`'s tasks when the submitter names none: a Python
/// function (registered as `module:function`) goes to [`PYTHON_QUEUE`],
/// which Python workers serve, a program to
/// [`crate::command::COMMAND_QUEUE`], which the workers that allow programs
/// serve, anything else to `default`, which the Rust workers serve.
pub fn default_queue_for(func: &str) -> String {
    if func == crate::command::COMMAND_FUNC {
        crate::command::COMMAND_QUEUE.into()
    } else if func == CODE_FUNC {
        CODE_QUEUE.into()
    } else if func.contains(':') {
        PYTHON_QUEUE.into()
    } else {
        default_queue()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_function_has_its_own_queue() {
        assert_eq!(default_queue_for("inc"), "default");
        assert_eq!(default_queue_for(CODE_FUNC), CODE_QUEUE);
        assert_eq!(default_queue_for("funcs:inc"), PYTHON_QUEUE);
        assert_eq!(
            default_queue_for(crate::command::COMMAND_FUNC),
            crate::command::COMMAND_QUEUE
        );
    }
}
