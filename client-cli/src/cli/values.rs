//! Task arguments as typed on the command line, and keys read from stdin.
//!
//! An argument is JSON when it parses as JSON, a future when it is `@KEY`,
//! and a string otherwise: what a shell user means by `warren submit inc 1`
//! and `warren submit identity hello`. Text that starts like JSON but is not
//! valid JSON, and numbers that JSON cannot carry exactly, are errors, never
//! a silently different argument.

use std::io::BufRead;

use serde_json::Value;
use warren_client::Client;

/// Parses CLI arguments: `@KEY` is a future (which must exist), JSON is JSON,
/// anything else is a string.
pub async fn parse_args(client: &Client, raw: &[String]) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut refs = Vec::new();
    for a in raw {
        if let Some(key) = a.strip_prefix('@') {
            if key.is_empty() {
                anyhow::bail!("argument \"@\" names no future: write @KEY");
            }
            refs.push(key.to_string());
            out.push(warren_core::args::future_ref(key));
        } else {
            out.push(parse_value(a)?);
        }
    }
    require_futures(client, &refs, "check the key, or the --namespace").await?;
    Ok(out)
}

/// Fails naming the first of `keys` that is no future of the namespace;
/// `hint` says what to check.
pub async fn require_futures(client: &Client, keys: &[String], hint: &str) -> anyhow::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    for (key, known) in keys.iter().zip(client.exists(keys).await?) {
        if !known {
            anyhow::bail!(
                "argument @{key}: no future with key {key:?} in namespace {:?} ({hint})",
                client.settings().namespace
            );
        }
    }
    Ok(())
}

/// A JSON value, or the text itself as a string. Text that starts like a JSON
/// object, list or string must be valid JSON, and a number must fit a 64-bit
/// integer or a finite double.
pub fn parse_value(a: &str) -> anyhow::Result<Value> {
    if looks_numeric(a) {
        return parse_number(a);
    }
    match serde_json::from_str(a) {
        Ok(v) => Ok(v),
        Err(e) if a.trim_start().starts_with(['{', '[', '"']) => {
            anyhow::bail!(
                "argument {a:?} is not valid JSON: {e} (quote it as a JSON string to pass text)"
            )
        }
        Err(_) => Ok(Value::String(a.to_string())),
    }
}

/// Whether `a` is written as a JSON number (`-12`, `3.5`, `1e400`): an
/// optional `-`, digits, an optional fraction and an optional exponent.
fn looks_numeric(a: &str) -> bool {
    fn digits(s: &str) -> (&str, bool) {
        let rest = s.trim_start_matches(|c: char| c.is_ascii_digit());
        (rest, rest.len() < s.len())
    }
    let s = a.strip_prefix('-').unwrap_or(a);
    let (mut s, whole) = digits(s);
    if !whole {
        return false;
    }
    if let Some(frac) = s.strip_prefix('.') {
        let (rest, some) = digits(frac);
        if !some {
            return false;
        }
        s = rest;
    }
    if let Some(exp) = s.strip_prefix(['e', 'E']) {
        let (rest, some) = digits(exp.strip_prefix(['+', '-']).unwrap_or(exp));
        if !some {
            return false;
        }
        s = rest;
    }
    s.is_empty()
}

fn parse_number(a: &str) -> anyhow::Result<Value> {
    let is_integer = !a.contains(['.', 'e', 'E']);
    match serde_json::from_str::<Value>(a) {
        Ok(Value::Number(n)) if !is_integer || n.is_i64() => Ok(Value::Number(n)),
        Ok(_) if is_integer => anyhow::bail!(
            "argument {a}: integers must fit 64 bits (-9223372036854775808 to 9223372036854775807); pass a larger one as a string: '\"{a}\"'"
        ),
        _ => anyhow::bail!(
            "argument {a} is not a number JSON can carry (out of range or malformed); pass it as a string: '\"{a}\"'"
        ),
    }
}

/// `-` reads keys from stdin, one per line.
pub fn expand_stdin(keys: Vec<String>) -> anyhow::Result<Vec<String>> {
    if keys.len() == 1 && keys[0] == "-" {
        let mut out = Vec::new();
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            let line = line.trim();
            if !line.is_empty() {
                out.push(line.to_string());
            }
        }
        return Ok(out);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn args_are_json_or_bare_strings() {
        assert_eq!(parse_value("5000000").unwrap(), json!(5_000_000));
        assert_eq!(parse_value("-5").unwrap(), json!(-5));
        assert_eq!(parse_value("2.5e3").unwrap(), json!(2500.0));
        assert_eq!(parse_value("\"text\"").unwrap(), json!("text"));
        assert_eq!(parse_value("[1,2]").unwrap(), json!([1, 2]));
        assert_eq!(parse_value("{\"a\":1}").unwrap(), json!({"a": 1}));
        assert_eq!(parse_value("hello").unwrap(), json!("hello"));
        assert_eq!(parse_value("1.2.3-beta").unwrap(), json!("1.2.3-beta"));
        let e = parse_value("{broken").unwrap_err().to_string();
        assert!(e.contains("\"{broken\" is not valid JSON"), "{e}");
    }

    #[test]
    fn numbers_json_cannot_carry_are_errors_not_strings_or_floats() {
        let e = parse_value("1e400").unwrap_err().to_string();
        assert!(e.contains("argument 1e400 is not a number"), "{e}");
        let e = parse_value("18446744073709551615").unwrap_err().to_string();
        assert!(e.contains("integers must fit 64 bits"), "{e}");
        assert_eq!(parse_value("9223372036854775807").unwrap(), json!(i64::MAX));
    }
}
