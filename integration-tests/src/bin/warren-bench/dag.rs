//! Row 5: the notebook's map + `add_them` tree, scaled.

use super::*;

/// The notebook's shape, scaled: `inc` over `width` items, then a binary tree
/// of `add_them` (one `map_with` per level). Returns tasks and wall time.
pub(crate) async fn reduction_dag(client: &Client, width: i64) -> Result<(usize, Duration)> {
    let t = Instant::now();
    let mut level = client
        .map_with("inc", arg_lists(0..width), &impure())
        .await
        .context("submitting the DAG's map")?;
    let mut tasks = level.len();
    for _ in 0..MAX_TREE_LEVELS {
        if level.len() <= 1 {
            break;
        }
        let (next, added) = reduce_level(client, &level).await?;
        level = next;
        tasks += added;
    }
    ensure!(level.len() == 1, "the tree did not reduce to one future");
    let total = level[0].result().await.context("awaiting the DAG's root")?;
    let wall = t.elapsed();
    let want = width * (width + 1) / 2;
    ensure!(
        total.as_i64() == Some(want),
        "the DAG summed to {total}, expected {want}"
    );
    Ok((tasks, wall))
}

/// One tree level: `add_them` of each pair; an odd last future is carried up.
/// Returns the next level and the tasks submitted.
pub(crate) async fn reduce_level(
    client: &Client,
    level: &[warren_client::Future],
) -> Result<(Vec<warren_client::Future>, usize)> {
    let mut pairs = level.chunks_exact(2);
    let arg_lists = pairs
        .by_ref()
        .map(|p| {
            Ok(vec![
                serde_json::to_value(&p[0])?,
                serde_json::to_value(&p[1])?,
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    let carried = pairs.remainder().to_vec();
    let submitted = arg_lists.len();
    let mut next = client
        .map_with("add_them", arg_lists, &impure())
        .await
        .context("submitting a tree level")?;
    next.extend(carried);
    Ok((next, submitted))
}

/// Row 5.
pub(crate) fn dag_row(width: i64, tasks: usize, wall: Duration) -> Row {
    Row {
        id: "5",
        what: format!(
            "notebook DAG scaled: map(inc) over {} + add_them tree = {} tasks",
            thousands(width as u64),
            thousands(tasks as u64)
        ),
        value: format!(
            "{:.1} s wall ({} tasks/s)",
            wall.as_secs_f64(),
            thousands((tasks as f64 / wall.as_secs_f64()) as u64)
        ),
        target: "(reference)".into(),
        verdict: Verdict::Info,
        others: None,
    }
}
