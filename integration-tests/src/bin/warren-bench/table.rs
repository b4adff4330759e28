//! One line of the table, and the table as Markdown.

use super::*;

/// Whether a row met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Met,
    NotMet,
    /// A reference number with no target.
    Info,
}

/// One line of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) id: &'static str,
    pub(crate) what: String,
    pub(crate) value: String,
    pub(crate) target: String,
    pub(crate) verdict: Verdict,
    /// Mean CPU cores used by other processes while this row ran (see [`Section`]).
    pub(crate) others: Option<f64>,
}

impl Row {
    /// A row whose verdict is `met`.
    pub(crate) fn judged(
        id: &'static str,
        what: String,
        value: String,
        target: &str,
        met: bool,
    ) -> Row {
        Row {
            id,
            what,
            value,
            target: target.to_string(),
            verdict: if met { Verdict::Met } else { Verdict::NotMet },
            others: None,
        }
    }

    /// A row for a measurement that failed.
    pub(crate) fn failed(id: &'static str, what: &str, target: &str, error: &anyhow::Error) -> Row {
        let message = format!("{error:#}").replace('|', "/").replace('\n', " ");
        Row::judged(
            id,
            what.to_string(),
            format!("failed: {message}"),
            target,
            false,
        )
    }
}

/// `12345678` → `12,345,678`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The rows as a Markdown table.
pub(crate) fn render_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| # | what | value | target | met | others' CPU |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let verdict = match r.verdict {
            Verdict::Met => "met",
            Verdict::NotMet => "**not met**",
            Verdict::Info => "—",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.id,
            r.what,
            r.value,
            r.target,
            verdict,
            cores(r.others)
        ));
    }
    out
}
