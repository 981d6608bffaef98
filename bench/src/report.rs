//! Number formatting shared by the result tables.

/// Microseconds as milliseconds with 3 significant-ish digits.
pub fn ms(us: f64) -> String {
    let m = us / 1000.0;
    if m < 1.0 {
        format!("{m:.3}")
    } else if m < 10.0 {
        format!("{m:.2}")
    } else {
        format!("{m:.1}")
    }
}

/// `a / b` as "0.42×" ("0.004×" below 0.1), or "—" when undefined.
pub fn ratio(a: f64, b: f64) -> String {
    if !(b > 0.0 && a.is_finite()) {
        return "—".into();
    }
    let r = a / b;
    if r < 0.1 {
        format!("{r:.3}×")
    } else {
        format!("{r:.2}×")
    }
}

/// An optional number with `digits` decimals, or "—".
pub fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |c| format!("{c:.digits$}"))
}

/// A count as "1M", "20k" when round, else the number.
pub fn human(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// A byte count in GiB / MiB / KiB (one decimal unless round) or B.
pub fn human_bytes(n: u64) -> String {
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if n >= unit {
            let v = n as f64 / unit as f64;
            return if n.is_multiple_of(unit) {
                format!("{} {name}", n / unit)
            } else {
                format!("{v:.1} {name}")
            };
        }
    }
    format!("{n} B")
}

/// Latency and resource readings of one result row.
pub struct Cells {
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub server_cpu_us: Option<f64>,
    pub client_cpu_us: Option<f64>,
    pub rss_mib: Option<f64>,
}

impl Cells {
    /// "p50 | p99 | p99.9 | server CPU | client CPU | RSS" (ms, µs, MiB), for a markdown row.
    pub fn cols(&self) -> String {
        format!(
            "{} | {} | {} | {} | {} | {}",
            ms(self.p50_us as f64),
            ms(self.p99_us as f64),
            ms(self.p999_us as f64),
            opt(self.server_cpu_us, 2),
            opt(self.client_cpu_us, 2),
            opt(self.rss_mib, 0),
        )
    }
}

/// One target's result of one workload, as a per-workload table shows it.
pub struct TargetRow<T> {
    pub name: String,
    pub target: &'static str,
    pub is_etcd: bool,
    pub is_ballast: bool,
    pub res: Result<T, String>,
}

/// The result ballast rows compare with: etcd 3.5's, else any etcd's.
pub fn etcd_reference<T>(rows: &[TargetRow<T>]) -> Option<&T> {
    let of = || rows.iter().filter(|r| r.is_etcd);
    of().find(|r| r.target == "etcd-3.5")
        .or_else(|| of().next())
        .and_then(|r| r.res.as_ref().ok())
}

/// A markdown table: `head` (header and separator lines), then per row `row(row, result, the
/// etcd reference)`, or for a failed run its first error line and `cells` empty cells.
pub fn table<T>(
    head: &str,
    rows: &[TargetRow<T>],
    cells: usize,
    row: impl Fn(&TargetRow<T>, &T, Option<&T>) -> String,
) -> String {
    let mut s = head.to_string();
    let etcd = etcd_reference(rows);
    for r in rows {
        match &r.res {
            Ok(x) => s.push_str(&row(r, x, etcd)),
            Err(e) => {
                let e = e.lines().next().unwrap_or_default().replace('|', "/");
                let empty = " |".repeat(cells);
                s.push_str(&format!(
                    "| {} | {} | failed: {e} |{empty}\n",
                    r.name, r.target
                ));
            }
        }
    }
    s
}

/// One notes line per row: "- name / target: " and `ok(result)`, or the whole error.
pub fn notes<T>(rows: &[TargetRow<T>], ok: impl Fn(&T) -> String) -> String {
    rows.iter()
        .map(|r| {
            let what = match &r.res {
                Err(e) => format!("failed: {}", e.replace('\n', " ⏎ ")),
                Ok(x) => ok(x),
            };
            format!("- {} / {}: {what}\n", r.name, r.target)
        })
        .collect()
}
