//! Programs as tasks, from the client: each command line becomes a task of
//! [`COMMAND_FUNC`] (see [`warren_core::command`]), keyed by its program.

use std::time::Duration;

use serde_json::Value;
use warren_core::command::{COMMAND_FUNC, CommandOptions, key_prefix, task_args};
use warren_core::taskkey;

use super::{Client, SubmitOptions};
use crate::error::Error;
use crate::future::Future;

/// What a program task wrote, as `warren logs` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Logs {
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Client {
    /// One program task per command line (its first element is the program;
    /// futures among the elements are dependencies, replaced by their
    /// values: a string as it is, anything else as its JSON text). With
    /// `opts.key`, a single command line gets that key.
    pub async fn submit_commands(
        &self,
        argvs: Vec<Vec<Value>>,
        options: &CommandOptions,
        opts: &SubmitOptions,
    ) -> Result<Vec<Future>, Error> {
        let single = argvs.len() == 1;
        let specs = argvs
            .into_iter()
            .map(|argv| {
                let Some(Value::String(program)) = argv.first() else {
                    return Err(Error::InvalidArgument(
                        "a command line starts with its program's name or path".into(),
                    ));
                };
                let name = key_prefix(program);
                let args = task_args(argv, options);
                let key = match &opts.key {
                    Some(k) if single => k.clone(),
                    _ if opts.pure => taskkey::pure_key_as(&name, COMMAND_FUNC, &args),
                    _ => taskkey::random_key(&name),
                };
                self.spec(COMMAND_FUNC, args, opts, Some(key))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let keys: Vec<String> = specs.iter().map(|s| s.key.clone()).collect();
        self.submit_specs(specs, opts.detach).await?;
        Ok(keys.iter().map(|k| self.future(k)).collect())
    }

    /// Fails with [`Error::UnservedFunction`] unless a live worker consuming
    /// `queue` allows `program` (`warren-worker --allow-command`).
    pub async fn check_command(&self, program: &str, queue: &str) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let workers = self.workers().await?;
            match crate::served::check_command(program, queue, &workers) {
                Ok(()) => return Ok(()),
                Err(why) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::UnservedFunction(why));
                }
                // A worker that just started announces itself within moments.
                Err(_) if workers.is_empty() => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(why) => return Err(Error::UnservedFunction(why)),
            }
        }
    }

    /// What task `key` wrote (a program, or a Python task's prints), if
    /// anything was kept.
    pub async fn logs(&self, key: &str) -> Result<Option<Logs>, Error> {
        self.flush().await?;
        match self.inner.store.logs(key).await? {
            None => Ok(None),
            Some(json) => Ok(Some(serde_json::from_str(&json)?)),
        }
    }
}
