//! Futures inside task arguments.
//!
//! A task's arguments are JSON. A future passed as an argument (also nested in a
//! list or a map, as dask allows) is the object `{"$future": "<key>"}`. The
//! client collects these references as the task's dependencies; the scheduler
//! replaces them with the dependencies' values before a worker sees the task.

use std::collections::HashMap;

use serde_json::Value;

/// The field name that marks a future reference.
pub const FUTURE_FIELD: &str = "$future";

/// The reference object for the future with `key`.
pub fn future_ref(key: &str) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(FUTURE_FIELD.into(), Value::String(key.into()));
    Value::Object(m)
}

/// The key if `v` is exactly a future reference.
pub fn as_future_ref(v: &Value) -> Option<&str> {
    match v {
        Value::Object(m) if m.len() == 1 => m.get(FUTURE_FIELD).and_then(Value::as_str),
        _ => None,
    }
}

/// Keys of every future referenced anywhere in `args`, each once, in first-seen order.
pub fn dependencies(args: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for a in args {
        collect(a, &mut out);
    }
    out
}

fn collect(v: &Value, out: &mut Vec<String>) {
    if let Some(k) = as_future_ref(v) {
        if !out.iter().any(|o| o == k) {
            out.push(k.to_string());
        }
        return;
    }
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
        Value::Object(m) => m.values().for_each(|i| collect(i, out)),
        _ => {}
    }
}

/// Replaces every future reference in `args` with its value from `values`.
///
/// Returns the key of the first reference that has no value, if any.
pub fn substitute(args: &mut [Value], values: &HashMap<String, Value>) -> Result<(), String> {
    for a in args.iter_mut() {
        replace(a, values)?;
    }
    Ok(())
}

fn replace(v: &mut Value, values: &HashMap<String, Value>) -> Result<(), String> {
    if let Some(k) = as_future_ref(v) {
        let value = values.get(k).ok_or_else(|| k.to_string())?;
        *v = value.clone();
        return Ok(());
    }
    match v {
        Value::Array(items) => items.iter_mut().try_for_each(|i| replace(i, values)),
        Value::Object(m) => m.values_mut().try_for_each(|i| replace(i, values)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_nested_dependencies_once_in_order() {
        let args = vec![
            future_ref("a"),
            json!([1, future_ref("b"), {"x": future_ref("a")}]),
            json!({"$future": "c", "other": 1}),
        ];
        assert_eq!(dependencies(&args), vec!["a", "b"]);
    }

    #[test]
    fn substitutes_values_and_names_the_missing_key() {
        let mut args = vec![future_ref("a"), json!({"y": [future_ref("b")]})];
        let values = HashMap::from([("a".to_string(), json!(1)), ("b".to_string(), json!("two"))]);
        substitute(&mut args, &values).unwrap();
        assert_eq!(args, vec![json!(1), json!({"y": ["two"]})]);

        let mut args = vec![future_ref("zzz")];
        assert_eq!(substitute(&mut args, &values).unwrap_err(), "zzz");
    }
}
