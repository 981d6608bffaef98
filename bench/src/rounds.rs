//! `--rounds N`: the ratios of N rounds side by side. On a shared 2-CPU host one run of a
//! workload moves by tens of percent from one run to the next (the host drifts within the hour),
//! so a ratio against etcd or against a baseline phase is judged from several rounds, each
//! running every target again, not from one.
//!
//! The summary is read back from each round's markdown tables rather than from the workloads'
//! rows: every table already prints its ratios as "… vs etcd" or "… ÷ baseline" columns, so
//! every workload, present or future, is covered the same way.

/// One ratio cell of a round: which row (its leading text cells) and which column.
#[derive(Debug)]
struct Cell {
    table: usize,
    row: Vec<String>,
    column: String,
    value: f64,
}

/// Whether a column holds a ratio the summary follows.
fn is_ratio_column(header: &str) -> bool {
    header.contains("vs etcd") || header.contains("÷ baseline")
}

/// The cells of a markdown table line ("| a | b |" → ["a", "b"]).
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// A row's leading text cells (its workload, target, phase, …): up to the first empty or
/// numeric cell.
fn row_key(row: &[String]) -> Vec<String> {
    row.iter()
        .take_while(|c| c.chars().next().is_some_and(|ch| !ch.is_ascii_digit() && ch != '—'))
        .cloned()
        .collect()
}

/// "0.42×" → 0.42; a cell with more than a ratio ("2.03× (list)") is none.
fn ratio_value(cell: &str) -> Option<f64> {
    cell.strip_suffix('×')?.parse().ok()
}

/// Every ratio cell of one round's tables, in table and row order.
fn ratio_cells(round: &str) -> Vec<Cell> {
    let mut out = Vec::new();
    let mut lines = round.lines().peekable();
    let mut table = 0;
    while let Some(line) = lines.next() {
        if !line.starts_with('|') {
            continue;
        }
        let header = cells(line);
        lines.next_if(|l| l.starts_with("|-") || l.starts_with("| -") || l.starts_with("|:"));
        while let Some(row) = lines.next_if(|l| l.starts_with('|')) {
            let row = cells(row);
            let key = row_key(&row);
            for (column, cell) in header.iter().zip(&row) {
                if let (true, Some(value)) = (is_ratio_column(column), ratio_value(cell)) {
                    out.push(Cell { table, row: key.clone(), column: column.clone(), value });
                }
            }
        }
        table += 1;
    }
    out
}

/// The median of `v`, sorted.
fn median(v: &[f64]) -> f64 {
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The summary table of `rounds` (each round's tables as markdown): a line per ratio cell of
/// the first round, its value in every round ("—" where a round lacks it), the median and the
/// spread. Empty when no round has a ratio.
pub fn summary(rounds: &[String]) -> String {
    let per_round: Vec<Vec<Cell>> = rounds.iter().map(|r| ratio_cells(r)).collect();
    let Some(first) = per_round.first().filter(|c| !c.is_empty()) else {
        return String::new();
    };
    let round_cols: String = (1..=rounds.len()).map(|r| format!(" round {r} |")).collect();
    let rule: String = (0..rounds.len()).map(|_| "--:|").collect();
    let mut md = format!("| row | ratio |{round_cols} median | min–max |\n|---|---|{rule}--:|--:|\n");
    for cell in first {
        let same = |c: &&Cell| c.table == cell.table && c.row == cell.row && c.column == cell.column;
        let values: Vec<Option<f64>> = per_round.iter().map(|r| r.iter().find(same).map(|c| c.value)).collect();
        let mut known: Vec<f64> = values.iter().flatten().copied().collect();
        known.sort_by(f64::total_cmp);
        let shown: String = values.iter().map(|v| format!(" {} |", v.map_or("—".into(), fmt))).collect();
        // (The first round has this cell, so `known` is never empty.)
        let (lo, hi) = (known[0], known[known.len() - 1]);
        md += &format!(
            "| {} | {} |{shown} {} | {}–{} |\n",
            cell.row.join(" / "),
            cell.column,
            fmt(median(&known)),
            fmt(lo),
            fmt(hi)
        );
    }
    md
}

/// A ratio as the tables print it.
fn fmt(r: f64) -> String {
    crate::report::ratio(r, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(p99_ratio: &str, list_ratio: &str) -> String {
        format!(
            "**short mode**\n\n\
             | workload | target | ops/s | p99 ms | p99 vs etcd |\n\
             |---|---|--:|--:|--:|\n\
             | put 100c/10conn | etcd-3.5 | 18811 | 21.1 |  |\n\
             | put 100c/10conn | ballast-1shard | 44895 | 4.51 | {p99_ratio} |\n\
             \n\
             | workload | target | phase | put p99 ms | p99 ÷ baseline | p99 vs etcd |\n\
             |---|---|---|--:|--:|--:|\n\
             | pauses | ballast-1shard | baseline | 1.36 | 1.00× | 0.54× |\n\
             | pauses | ballast-1shard | list | 3.42 | {list_ratio} | — |\n"
        )
    }

    #[test]
    fn follows_each_ratio_cell_across_rounds() {
        let rounds = [round("0.21×", "2.52×"), round("0.30×", "1.60×"), round("0.24×", "1.90×")];
        let md = summary(&rounds);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| row | ratio | round 1 | round 2 | round 3 | median | min–max |");
        assert_eq!(lines[2], "| put 100c/10conn / ballast-1shard | p99 vs etcd | 0.21× | 0.30× | 0.24× | 0.24× | 0.21×–0.30× |");
        assert_eq!(lines[3], "| pauses / ballast-1shard / baseline | p99 ÷ baseline | 1.00× | 1.00× | 1.00× | 1.00× | 1.00×–1.00× |");
        assert_eq!(lines[4], "| pauses / ballast-1shard / baseline | p99 vs etcd | 0.54× | 0.54× | 0.54× | 0.54× | 0.54×–0.54× |");
        assert_eq!(lines[5], "| pauses / ballast-1shard / list | p99 ÷ baseline | 2.52× | 1.60× | 1.90× | 1.90× | 1.60×–2.52× |");
        assert_eq!(lines.len(), 6, "empty and dash cells are no ratio: {md}");
    }

    #[test]
    fn a_round_without_the_cell_shows_a_dash_and_the_median_is_of_the_others() {
        let short = "| workload | target | p99 vs etcd |\n|---|---|--:|\n| put 1c | ballast-1shard | 0.50× |\n".to_string();
        let other = "| workload | target | p99 vs etcd |\n|---|---|--:|\n| put 1c | ballast-2shards | 0.70× |\n".to_string();
        let md = summary(&[short.clone(), other, short]);
        assert!(md.contains("| put 1c / ballast-1shard | p99 vs etcd | 0.50× | — | 0.50× | 0.50× | 0.50×–0.50× |"), "{md}");
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), 2.5);
    }

    #[test]
    fn no_ratio_no_summary() {
        assert_eq!(summary(&["| a | b |\n|---|---|\n| x | 1 |\n".to_string()]), "");
        assert_eq!(summary(&[]), "");
    }
}
