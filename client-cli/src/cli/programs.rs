//! Program tasks on the command line (`--cmd`): command lines from what was
//! typed, the values of `map --cmd` (`::: VALUE...` or `--each-line FILE`),
//! and `{}` filled in as GNU parallel fills it.

use std::io::BufRead;

use serde_json::Value;
use warren_client::Client;
use warren_core::command::CommandOptions;

use super::args::ProgramFlags;

/// The separator of `map --cmd`'s values.
pub const VALUES: &str = ":::";

/// The options of `--env K=V` (checked), `--cwd` and `--json-stdout`.
pub fn options(flags: &ProgramFlags) -> anyhow::Result<CommandOptions> {
    let mut env = std::collections::BTreeMap::new();
    for pair in &flags.env {
        let Some((k, v)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            anyhow::bail!("--env {pair:?} must be NAME=VALUE");
        };
        // Refused by every worker; said here, before anything is sent.
        if warren_core::allow::is_loader_variable(k) {
            anyhow::bail!(
                "--env {k}: this variable changes how programs load or start, so no worker passes it from a task to a program"
            );
        }
        env.insert(k.to_string(), v.to_string());
    }
    Ok(CommandOptions {
        env,
        cwd: flags.cwd.clone(),
        json_stdout: flags.json_stdout,
    })
}

/// `template` filled with `value`: every `{}` replaced, or the value added
/// as the last argument if there is no `{}` (pure).
pub fn fill(template: &[String], value: &str) -> Vec<String> {
    if template.iter().any(|a| a.contains("{}")) {
        template.iter().map(|a| a.replace("{}", value)).collect()
    } else {
        let mut line = template.to_vec();
        line.push(value.to_string());
        line
    }
}

/// `map --cmd`'s arguments split at `:::` into the template and the values.
pub fn split_values(args: &[String]) -> (Vec<String>, Option<Vec<String>>) {
    match args.iter().position(|a| a == VALUES) {
        Some(i) => (args[..i].to_vec(), Some(args[i + 1..].to_vec())),
        None => (args.to_vec(), None),
    }
}

/// The values of `--each-line FILE` (`-`: stdin), blank lines skipped.
pub fn lines_of(file: &str) -> anyhow::Result<Vec<String>> {
    let reader: Box<dyn BufRead> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f =
            std::fs::File::open(file).map_err(|e| anyhow::anyhow!("--each-line {file}: {e}"))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line?;
        if !line.trim().is_empty() {
            out.push(line);
        }
    }
    Ok(out)
}

/// A command line as task arguments: `@KEY` is the future (which must
/// exist), `@@text` the literal `@text`, anything else the text itself.
pub async fn command_line(client: &Client, line: &[String]) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::with_capacity(line.len());
    let mut refs = Vec::new();
    for (i, a) in line.iter().enumerate() {
        if let Some(rest) = a.strip_prefix("@@") {
            out.push(Value::String(format!("@{rest}")));
        } else if let Some(key) = a.strip_prefix('@').filter(|_| i > 0) {
            if key.is_empty() {
                anyhow::bail!("argument \"@\" names no future: write @KEY (or @@ for a literal @)");
            }
            refs.push(key.to_string());
            out.push(warren_core::args::future_ref(key));
        } else {
            out.push(Value::String(a.clone()));
        }
    }
    super::values::require_futures(client, &refs, "check the key; write @@ for a literal @")
        .await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: &[&str]) -> Vec<String> {
        a.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn braces_are_filled_or_the_value_comes_last() {
        assert_eq!(
            fill(&s(&["gzip", "-k", "{}"]), "a.txt"),
            s(&["gzip", "-k", "a.txt"])
        );
        assert_eq!(
            fill(&s(&["cp", "{}", "{}.bak"]), "x"),
            s(&["cp", "x", "x.bak"])
        );
        assert_eq!(fill(&s(&["echo"]), "v"), s(&["echo", "v"]));
    }

    #[test]
    fn values_follow_the_separator() {
        let (t, v) = split_values(&s(&["-k", "{}", ":::", "a", "b"]));
        assert_eq!((t, v), (s(&["-k", "{}"]), Some(s(&["a", "b"]))));
        assert_eq!(split_values(&s(&["-l"])).1, None);
    }

    #[test]
    fn env_pairs_must_name_a_variable() {
        let mut flags = ProgramFlags {
            cmd: true,
            env: s(&["A=1", "B=x=y"]),
            cwd: None,
            json_stdout: false,
        };
        let o = options(&flags).unwrap();
        assert_eq!(o.env["B"], "x=y");
        flags.env = s(&["LD_PRELOAD=/tmp/x.so"]);
        let e = options(&flags).unwrap_err().to_string();
        assert!(
            e.contains("LD_PRELOAD") && e.contains("load or start"),
            "{e}"
        );
        flags.env = s(&["=1"]);
        assert!(options(&flags).is_err());
        flags.env = s(&["NOEQUALS"]);
        assert!(options(&flags).is_err());
    }
}
