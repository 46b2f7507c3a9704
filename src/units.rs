//! How sizes and ages read to people: `1.5 KiB`, `12d`.

/// `1 tag`, `2 tags`: a count with its noun in the right number.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Binary-unit sizes: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Ages as people say them: `40s`, `45m`, `5h`, `12d`.
pub fn human_age(secs: i64) -> String {
    let d = secs.max(0);
    if d >= 86_400 {
        format!("{}d", d / 86_400)
    } else if d >= 3600 {
        format!("{}h", d / 3600)
    } else if d >= 60 {
        format!("{}m", d / 60)
    } else {
        format!("{d}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn ages() {
        // Never "0m ago" for something a few seconds old.
        assert_eq!(human_age(12), "12s");
        assert_eq!(human_age(-5), "0s");
        assert_eq!(human_age(90), "1m");
        assert_eq!(human_age(7200), "2h");
        assert_eq!(human_age(3 * 86_400), "3d");
    }
}
