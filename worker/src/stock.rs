//! The stock worker's functions: the notebook's, plus a few utilities.
//!
//! `is_prime` and `count_primes_less_than` are the notebook's naive algorithm,
//! line for line, so the work is real CPU work. `add_them`, `inc` and `sum` follow
//! Python's `+` on JSON values (numbers, strings, lists), so the notebook's cells
//! give the notebook's results. `scale` and `byte_count` take stored values
//! ([`Binary`]: a numpy array, bytes) rather than JSON.

use std::time::Duration;

use serde_json::{Number, Value};

use crate::registry::{Registry, TaskError};
use warren_core::binary::Binary;

/// A registry with every stock function.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("is_prime", |n: i64| Ok::<_, TaskError>(is_prime(n)));
    r.register("count_primes_less_than", |m: i64| {
        Ok::<_, TaskError>(count_primes_less_than(m))
    });
    r.register("add_them", |x: Value, y: Value| add(&x, &y));
    r.register("goes_wrong", goes_wrong);
    r.register("inc", |x: Value| add(&x, &Value::from(1)));
    r.register("sum", |xs: Vec<Value>| {
        xs.iter().try_fold(Value::from(0), |acc, x| add(&acc, x))
    });
    r.register("identity", |x: Value| Ok::<_, TaskError>(x));
    r.register("sleep", |secs: f64| {
        if !(0.0..=86_400.0).contains(&secs) {
            return Err(TaskError::new(
                "ValueError",
                format!("sleep length must be 0..86400 seconds, got {secs}"),
            ));
        }
        crate::cancel::sleep(Duration::from_secs_f64(secs))?;
        Ok(Value::Null)
    });
    r.register("scale", scale);
    r.register("byte_count", |b: Binary| Ok::<_, TaskError>(b.len()));
    r.register(
        "raise_panic",
        |message: String| -> Result<Value, TaskError> { panic!("{message}") },
    );
    r
}

/// The notebook's `is_prime`: trial division by every `i` in `0..=floor(sqrt(n))`.
pub fn is_prime(n: i64) -> bool {
    if n < 2 {
        return false;
    }
    if n == 2 {
        return true;
    }
    let limit = (n as f64).sqrt().floor() as i64;
    for i in 0..=limit {
        if i > 1 && n % i == 0 {
            return false;
        }
    }
    true
}

/// The notebook's `count_primes_less_than`: `sum(is_prime(i) for i in range(m))`.
pub fn count_primes_less_than(m: i64) -> i64 {
    (0..m.max(0)).filter(|&i| is_prime(i)).count() as i64
}

/// The notebook's `goes_wrong`: `10 / 0`, which raises `ZeroDivisionError`.
pub fn goes_wrong() -> Result<i64, TaskError> {
    let zero = 0;
    10i64
        .checked_div(zero)
        .ok_or_else(|| TaskError::new("ZeroDivisionError", "division by zero"))
}

/// Python's `x + y` on JSON values.
pub fn add(x: &Value, y: &Value) -> Result<Value, TaskError> {
    match (x, y) {
        (Value::Number(a), Value::Number(b)) => {
            if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
                return a.checked_add(b).map(Value::from).ok_or_else(|| {
                    TaskError::new(
                        "OverflowError",
                        format!("{a} + {b} does not fit in 64 bits"),
                    )
                });
            }
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            Number::from_f64(a + b)
                .map(Value::Number)
                .ok_or_else(|| TaskError::new("OverflowError", "result is not a finite number"))
        }
        (Value::String(a), Value::String(b)) => Ok(Value::String(format!("{a}{b}"))),
        (Value::Array(a), Value::Array(b)) => {
            Ok(Value::Array(a.iter().chain(b).cloned().collect()))
        }
        _ => Err(TaskError::new(
            "TypeError",
            format!(
                "unsupported operand type(s) for +: '{}' and '{}'",
                crate::registry::json_type_name(x),
                crate::registry::json_type_name(y)
            ),
        )),
    }
}

/// `a * k` for a numpy array of float64 (`"<f8"`): a new array of the same
/// shape, made and read without JSON.
pub fn scale(a: Binary, k: f64) -> Result<Binary, TaskError> {
    if a.dtype() != Some("<f8") {
        return Err(TaskError::new(
            "TypeError",
            format!(
                "scale() takes a numpy array of float64, got {}",
                a.describe()
            ),
        ));
    }
    let shape = a.shape().map(<[u64]>::to_vec).unwrap_or_default();
    let out: Vec<u8> = a
        .chunks_exact(8)
        .flat_map(|c| {
            let mut x = [0u8; 8];
            x.copy_from_slice(c);
            (f64::from_le_bytes(x) * k).to_le_bytes()
        })
        .collect();
    Ok(Binary::array(out, "<f8", shape)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn naive_primality_agrees_with_a_sieve() {
        let n = 20_000usize;
        let mut sieve = vec![true; n];
        sieve[0] = false;
        sieve[1] = false;
        for i in 2..n {
            if sieve[i] {
                for j in (i * i..n).step_by(i) {
                    sieve[j] = false;
                }
            }
        }
        for (i, &p) in sieve.iter().enumerate() {
            assert_eq!(is_prime(i as i64), p, "{i}");
        }
        assert_eq!(
            count_primes_less_than(n as i64),
            sieve.iter().filter(|&&p| p).count() as i64
        );
    }

    #[test]
    fn add_follows_python() {
        assert_eq!(add(&json!(1), &json!(2)).unwrap(), json!(3));
        assert_eq!(add(&json!(1.5), &json!(2)).unwrap(), json!(3.5));
        assert_eq!(add(&json!("a"), &json!("b")).unwrap(), json!("ab"));
        assert_eq!(add(&json!([1]), &json!([2])).unwrap(), json!([1, 2]));
        let e = add(&json!(1), &json!("x")).unwrap_err();
        assert_eq!(
            e.message(),
            "unsupported operand type(s) for +: 'int' and 'str'"
        );
    }

    #[test]
    fn goes_wrong_raises_zero_division() {
        let e = goes_wrong().unwrap_err();
        assert_eq!(
            (e.kind(), e.message()),
            ("ZeroDivisionError", "division by zero")
        );
    }
}
