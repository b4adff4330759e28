//! Programs as tasks: what a program task is, on the wire and as a rule.
//!
//! A program task is a task of the built-in function [`COMMAND_FUNC`], so it
//! has everything a function task has (a future, dependencies, retries, a
//! time limit, a priority, a queue, durability) with no new path through
//! the scheduler. Its two arguments are the command line (each element a
//! string, or a future reference that the scheduler replaces with the
//! future's value) and [`CommandOptions`]. Only workers started with
//! `--allow-command` register the function, and only for the programs they
//! allow ([`allows`], shared by the client's check and the worker's).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The function name of program tasks.
pub const COMMAND_FUNC: &str = "warren.cmd";
/// The queue program tasks go to unless told otherwise; a worker that
/// allows any program serves it besides its own queues.
pub const COMMAND_QUEUE: &str = "commands";

/// How a program runs, beside its command line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOptions {
    /// Variables added to the program's clean environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The working directory, which must exist on the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The value is the standard output parsed as JSON, not the text.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_stdout: bool,
}

/// The task arguments of a program task.
pub fn task_args(argv: Vec<Value>, options: &CommandOptions) -> Vec<Value> {
    vec![
        Value::Array(argv),
        serde_json::to_value(options).unwrap_or(Value::Null),
    ]
}

/// A program task's command line and options from its (resolved)
/// arguments: a string argument as it is, any other value as its JSON text.
pub fn from_task_args(args: Vec<Value>) -> Result<(Vec<String>, CommandOptions), String> {
    let mut it = args.into_iter();
    let (Some(Value::Array(argv)), options) = (it.next(), it.next()) else {
        return Err("a program task's first argument must be its command line (a list)".into());
    };
    let options = match options {
        None | Some(Value::Null) => CommandOptions::default(),
        Some(v) => serde_json::from_value(v).map_err(|e| format!("bad command options: {e}"))?,
    };
    let argv: Vec<String> = argv
        .into_iter()
        .map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .collect();
    if argv.first().is_none_or(|p| p.is_empty()) {
        return Err("a program task needs a program".into());
    }
    Ok((argv, options))
}

/// The key prefix of a program task: its program's file name, so that
/// `warren status` shows `seq-1f2e...` rather than a function name.
pub fn key_prefix(program: &str) -> String {
    let name = program.rsplit('/').next().unwrap_or(program);
    let clean: String = name
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .take(64)
        .collect();
    if clean.is_empty() {
        "cmd".into()
    } else {
        clean
    }
}

/// Whether `rules` (`--allow-command` values) allow `program`, by name:
/// - a rule without `/` is a program name: it allows that name (looked up
///   on the worker's PATH) and any path whose file name it is not (a path
///   must be allowed as a path);
/// - an absolute path allows exactly that path;
/// - `DIR/*` allows every program directly in `DIR`.
///
/// The worker applies the same rule to the path it resolved, so a name on
/// PATH cannot smuggle in a program from elsewhere.
pub fn allows(rules: &[String], program: &str) -> bool {
    rules.iter().any(|rule| {
        if let Some(dir) = rule.strip_suffix("/*") {
            program
                .rsplit_once('/')
                .is_some_and(|(parent, name)| parent == dir && !name.is_empty())
        } else {
            program == rule
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_paths_and_directories_allow_what_they_say() {
        let r = rules(&["seq", "/usr/bin/wc", "/opt/tools/*"]);
        assert!(allows(&r, "seq"));
        assert!(!allows(&r, "/tmp/seq"), "a name does not allow a path");
        assert!(allows(&r, "/usr/bin/wc"));
        assert!(!allows(&r, "wc"), "a path does not allow a bare name");
        assert!(allows(&r, "/opt/tools/convert"));
        assert!(!allows(&r, "/opt/tools/sub/convert"));
        assert!(!allows(&r, "/opt/toolsx/convert"));
        assert!(!allows(&r, "sh"), "no shell unless allowed by name");
        assert!(allows(&rules(&["sh"]), "sh"));
    }

    #[test]
    fn arguments_round_trip_and_non_strings_become_json_text() {
        let opts = CommandOptions {
            env: [("A".to_string(), "1".to_string())].into(),
            cwd: Some("/tmp".into()),
            json_stdout: true,
        };
        let args = task_args(vec![json!("echo"), json!(5), json!([1, "x"])], &opts);
        let (argv, back) = from_task_args(args).unwrap();
        assert_eq!(argv, ["echo", "5", "[1,\"x\"]"]);
        assert_eq!(back, opts);
        assert!(from_task_args(vec![json!("echo")]).is_err());
        assert!(from_task_args(vec![json!([])]).is_err());
    }

    #[test]
    fn keys_are_named_for_the_program() {
        assert_eq!(key_prefix("/usr/bin/wc"), "wc");
        assert_eq!(key_prefix("seq"), "seq");
        assert_eq!(key_prefix("/"), "cmd");
    }
}
