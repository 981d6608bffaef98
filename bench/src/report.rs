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

/// `a / b` as "0.42×", or "—" when undefined.
pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}×", a / b)
    } else {
        "—".into()
    }
}

/// An optional number with `digits` decimals, or "—".
pub fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |c| format!("{c:.digits$}"))
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
