//! The function registry: what a worker can run.
//!
//! Functions take positional arguments decoded from JSON with serde and return
//! `Result<T, E>` where `T: Serialize` and `E` converts into [`TaskError`] (any
//! `std::error::Error` does, through `?`). Bytes and numpy arrays, which are
//! stored values rather than JSON, are [`crate::Binary`] arguments and results. A wrong number of arguments or an
//! argument of the wrong type is a `TypeError`, worded as Python would, and a
//! panic is caught and becomes a `Panic` error with its source location: a task
//! can never take its worker down.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, Location};
use std::sync::{Arc, Once};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use warren_core::messages::TaskFailure;

/// An error raised by a task function.
///
/// Create one with [`TaskError::new`] (`type`, message), or let `?` convert any
/// `std::error::Error`. The source location is recorded for the traceback.
#[derive(Debug, Clone)]
pub struct TaskError {
    kind: String,
    message: String,
    location: &'static Location<'static>,
}

impl TaskError {
    /// An error of type `kind` (e.g. `ValueError`) with `message`.
    #[track_caller]
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            location: Location::caller(),
        }
    }

    /// The error type.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl<E: std::error::Error> From<E> for TaskError {
    #[track_caller]
    fn from(e: E) -> Self {
        let full = std::any::type_name::<E>();
        let short = full.split('<').next().unwrap_or(full);
        let short = short.rsplit("::").next().unwrap_or(short);
        TaskError::new(short, e.to_string())
    }
}

/// What a task function returns: `Result<T, E>` with a serializable `T`.
pub trait IntoTaskResult {
    /// The JSON value, or the error.
    fn into_task_result(self) -> Result<Value, TaskError>;
}

impl<T: Serialize, E: Into<TaskError>> IntoTaskResult for Result<T, E> {
    fn into_task_result(self) -> Result<Value, TaskError> {
        let v = self.map_err(Into::into)?;
        serde_json::to_value(v).map_err(|e| TaskError::new("SerializationError", e.to_string()))
    }
}

/// A function callable with positional JSON arguments. Implemented for closures
/// and `fn`s of up to six serde-decodable arguments.
pub trait TaskFn<Args>: Send + Sync + 'static {
    /// Decodes `args`, calls the function, encodes the result.
    fn call(&self, name: &str, args: Vec<Value>) -> Result<Value, TaskError>;
}

fn arity_error(name: &str, expected: usize, given: usize) -> TaskError {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    TaskError::new(
        "TypeError",
        format!(
            "{name}() takes {expected} positional argument{} but {given} {} given",
            plural(expected),
            if given == 1 { "was" } else { "were" }
        ),
    )
}

fn decode_arg<T: DeserializeOwned>(name: &str, index: usize, v: Value) -> Result<T, TaskError> {
    let shown = {
        let s = v.to_string();
        if s.chars().count() > 80 {
            format!("{}...", s.chars().take(77).collect::<String>())
        } else {
            s
        }
    };
    let given = if warren_core::store::blobs::BlobRef::from_json(&v).is_some() {
        "a stored value"
    } else {
        json_type_name(&v)
    };
    serde_json::from_value(v).map_err(|e| {
        let wanted = python_type_name(std::any::type_name::<T>());
        // serde's own text repeats the two types in Rust's words; keep only
        // what it adds beyond them (a missing field, a number out of range).
        let detail = e.to_string();
        let detail = if detail.starts_with("invalid type") {
            String::new()
        } else {
            format!(" ({detail})")
        };
        TaskError::new(
            "TypeError",
            format!(
                "{name}() argument {} must be {wanted}, got {given} {shown}{detail}",
                index + 1
            ),
        )
    })
}

/// The Python name of a JSON value's type, as a dask user reads it (and
/// as Python's own TypeErrors name it).
pub(crate) fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// A Rust argument type in Python's words: `i64` is `int`, `Vec<..>` a
/// `list`; JSON values take anything.
fn python_type_name(rust: &str) -> String {
    let base = rust.rsplit("::").next().unwrap_or(rust);
    let word = match base {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => "int",
        "f32" | "f64" => "float",
        "bool" => "bool",
        "String" | "str" | "&str" | "char" => "str",
        "Value" => "a JSON value",
        "Binary" => "bytes or a numpy array",
        _ if rust.contains("Vec<") => "list",
        _ if rust.contains("HashMap<") || rust.contains("BTreeMap<") || rust.contains("Map<") => {
            "dict"
        }
        _ if rust.starts_with("core::option::Option<") => "a value or None",
        _ => return base.to_string(),
    };
    word.to_string()
}

macro_rules! impl_task_fn {
    ($n:expr; $($A:ident $i:tt),*) => {
        impl<F, R, $($A),*> TaskFn<($($A,)*)> for F
        where
            F: Fn($($A),*) -> R + Send + Sync + 'static,
            R: IntoTaskResult,
            $($A: DeserializeOwned,)*
        {
            #[allow(unused_mut, unused_variables, non_snake_case)]
            fn call(&self, name: &str, args: Vec<Value>) -> Result<Value, TaskError> {
                if args.len() != $n {
                    return Err(arity_error(name, $n, args.len()));
                }
                let mut it = args.into_iter();
                $(let $A: $A = decode_arg(name, $i, it.next().unwrap_or(Value::Null))?;)*
                (self)($($A),*).into_task_result()
            }
        }
    };
}

impl_task_fn!(0;);
impl_task_fn!(1; A0 0);
impl_task_fn!(2; A0 0, A1 1);
impl_task_fn!(3; A0 0, A1 1, A2 2);
impl_task_fn!(4; A0 0, A1 1, A2 2, A3 3);
impl_task_fn!(5; A0 0, A1 1, A2 2, A3 3, A4 4);
impl_task_fn!(6; A0 0, A1 1, A2 2, A3 3, A4 4, A5 5);

type Typed = Arc<dyn Fn(&str, Vec<Value>) -> Result<Value, TaskError> + Send + Sync>;
type Raw = Arc<dyn Fn(Vec<Value>, CallSite<'_>) -> Result<Value, TaskFailure> + Send + Sync>;

/// How a registered function is called.
#[derive(Clone)]
enum Handler {
    /// A Rust function: its error gets a traceback from its source location.
    Typed(Typed),
    /// A function that makes its own [`TaskFailure`], traceback included: a
    /// bridge to code in another language (the Python worker's processes).
    Raw(Raw),
}

/// The functions a worker can run, by name.
#[derive(Clone, Default)]
pub struct Registry {
    fns: BTreeMap<String, Handler>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.fns.keys()).finish()
    }
}

/// Where a running task is, for its traceback.
#[derive(Debug, Clone, Copy)]
pub struct CallSite<'a> {
    /// The future's key.
    pub key: &'a str,
    /// The worker's identity (`host:pid`).
    pub worker: &'a str,
    /// The task's slot, which a function that waits for other tasks may
    /// give up meanwhile ([`crate::seat`]); none in a child process.
    pub seat: Option<&'a crate::seat::Seat>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `f` under `name` (replacing any function of that name).
    pub fn register<Args, F: TaskFn<Args>>(&mut self, name: &str, f: F) -> &mut Self {
        let f = Arc::new(f);
        self.fns.insert(
            name.to_string(),
            Handler::Typed(Arc::new(move |n: &str, args| f.call(n, args))),
        );
        self
    }

    /// Registers `f` under `name` as a bridge: it gets the JSON arguments and
    /// where it runs, and returns the value or its own complete
    /// [`TaskFailure`] (type, message, traceback), which is reported as it
    /// is. A panic in `f` is still caught.
    pub fn register_raw<F>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(Vec<Value>, CallSite<'_>) -> Result<Value, TaskFailure> + Send + Sync + 'static,
    {
        self.fns.insert(name.to_string(), Handler::Raw(Arc::new(f)));
        self
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.fns.keys().map(String::as_str).collect()
    }

    /// Runs `name` on `args`. Every failure, including an unknown name and a
    /// panic, comes back as a [`TaskFailure`] with a traceback.
    pub fn call(
        &self,
        name: &str,
        args: Vec<Value>,
        site: CallSite<'_>,
    ) -> Result<Value, TaskFailure> {
        install_panic_hook();
        let header = format!(
            "Traceback (most recent call last):\n  task {} (function {name}) on worker {}\n",
            site.key, site.worker
        );
        let Some(f) = self.fns.get(name) else {
            if name == warren_core::routing::CODE_FUNC {
                let message = format!(
                    "worker {} does not run functions sent as code: start Python workers with `python -m warren worker --accept-code` (and the namespace key) to run them",
                    site.worker
                );
                let traceback = format!("{header}CodeNotAccepted: {message}");
                return Err(TaskFailure::new("CodeNotAccepted", message, traceback));
            }
            return Err(TaskFailure::new(
                "UnknownFunction",
                format!(
                    "no function named {name:?} is registered on this worker; registered: {}",
                    self.names().join(", ")
                ),
                format!("{header}UnknownFunction: {name}"),
            ));
        };
        IN_TASK.with(|t| t.set(true));
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| match f {
            Handler::Typed(f) => f(name, args).map_err(Ok),
            Handler::Raw(f) => f(args, site).map_err(Err),
        }));
        IN_TASK.with(|t| t.set(false));
        match caught {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(Err(failure))) => Err(failure),
            Ok(Err(Ok(e))) => {
                let traceback = format!(
                    "{header}  File \"{}\", line {}, column {}, in {name}\n{}: {}",
                    e.location.file(),
                    e.location.line(),
                    e.location.column(),
                    e.kind,
                    e.message
                );
                Err(TaskFailure::new(e.kind, e.message, traceback))
            }
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic with a non-string payload".into());
                let (location, backtrace) = LAST_PANIC
                    .with(|p| p.borrow_mut().take())
                    .unwrap_or_default();
                let traceback =
                    format!("{header}  {location}, in {name}\n{backtrace}Panic: {message}");
                Err(TaskFailure::new("Panic", message, traceback))
            }
        }
    }
}

thread_local! {
    /// Whether this thread is inside [`Registry::call`]: panics elsewhere keep
    /// the default report.
    static IN_TASK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Location and backtrace of the last panic on this thread, set by the hook.
    static LAST_PANIC: std::cell::RefCell<Option<(String, String)>> = const { std::cell::RefCell::new(None) };
}

/// Records where a panic happened (the payload alone does not say) instead of
/// printing it: the panic becomes the task's error and is logged once there.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location().map_or_else(
                || "File <unknown>".to_string(),
                |l| {
                    format!(
                        "File \"{}\", line {}, column {}",
                        l.file(),
                        l.line(),
                        l.column()
                    )
                },
            );
            let bt = std::backtrace::Backtrace::capture();
            let backtrace = if bt.status() == std::backtrace::BacktraceStatus::Captured {
                format!("{bt}\n")
            } else {
                String::new()
            };
            if IN_TASK.with(std::cell::Cell::get) {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some((location, backtrace)));
            } else {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SITE: CallSite<'static> = CallSite {
        key: "k-1",
        worker: "host:1",
        seat: None,
    };

    fn registry() -> Registry {
        let mut r = Registry::new();
        r.register("add", |a: i64, b: i64| Ok::<_, TaskError>(a + b));
        r.register("boom", || -> Result<i64, TaskError> { panic!("kaboom") });
        r.register("bad", || -> Result<(), TaskError> {
            Err(TaskError::new("ValueError", "nope"))
        });
        r
    }

    #[test]
    fn decodes_typed_arguments_and_encodes_results() {
        assert_eq!(
            registry()
                .call("add", vec![json!(2), json!(3)], SITE)
                .unwrap(),
            json!(5)
        );
    }

    #[test]
    fn wrong_arity_and_types_are_type_errors_named_like_python() {
        let e = registry().call("add", vec![json!(1)], SITE).unwrap_err();
        assert_eq!(e.kind, "TypeError");
        assert_eq!(
            e.message,
            "add() takes 2 positional arguments but 1 was given"
        );
        let e = registry()
            .call("add", vec![json!(1), json!("x")], SITE)
            .unwrap_err();
        assert!(
            e.message
                .starts_with("add() argument 2 must be int, got str"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_float_for_an_int_says_int_and_float_once() {
        let e = registry()
            .call("add", vec![json!(5e6), json!(1)], SITE)
            .unwrap_err();
        assert_eq!(
            e.message,
            "add() argument 1 must be int, got float 5000000.0"
        );
        assert!(!e.message.contains("i64"), "{}", e.message);
        assert_eq!(
            python_type_name("alloc::vec::Vec<serde_json::value::Value>"),
            "list"
        );
        assert_eq!(python_type_name("f64"), "float");
        assert_eq!(python_type_name("alloc::string::String"), "str");
    }

    #[test]
    fn a_raw_function_reports_its_own_failure_unchanged() {
        let mut r = registry();
        r.register_raw("py:f", |args, site| {
            if args.is_empty() {
                return Err(TaskFailure::new(
                    "ZeroDivisionError",
                    "division by zero",
                    "tb",
                ));
            }
            Ok(json!(format!("{} on {}", site.key, site.worker)))
        });
        assert_eq!(
            r.call("py:f", vec![json!(1)], SITE).unwrap(),
            json!("k-1 on host:1")
        );
        let e = r.call("py:f", vec![], SITE).unwrap_err();
        assert_eq!(
            (e.kind.as_str(), e.traceback.as_str()),
            ("ZeroDivisionError", "tb")
        );
        assert!(r.names().contains(&"py:f"));
    }

    #[test]
    fn panics_become_errors_with_location() {
        let e = registry().call("boom", vec![], SITE).unwrap_err();
        assert_eq!(e.kind, "Panic");
        assert_eq!(e.message, "kaboom");
        assert!(e.traceback.contains("registry.rs"), "{}", e.traceback);
        assert!(
            e.traceback
                .contains("task k-1 (function boom) on worker host:1")
        );
    }

    #[test]
    fn errors_carry_type_message_and_location_and_unknown_names_list_the_registry() {
        let e = registry().call("bad", vec![], SITE).unwrap_err();
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("ValueError", "nope")
        );
        assert!(e.traceback.ends_with("ValueError: nope"));
        let e = registry().call("nosuch", vec![], SITE).unwrap_err();
        assert_eq!(e.kind, "UnknownFunction");
        assert!(e.message.contains("add, bad, boom"), "{}", e.message);
    }
}
