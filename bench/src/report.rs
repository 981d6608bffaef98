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
