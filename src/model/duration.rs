//! Human durations (`90d`, `12h`, `1h30m`, `0`) as used by `--grace` and policies: parsed once
//! (a clap value parser, a policy file), carried as a [`Span`], and written back the same way
//! into reports and plans. Hand-written rather than humantime's or jiff's: the plan format needs
//! a stable spelling (`1h30m`, `0`), `y` is 365 days (humantime's is 365.25), `m` is minutes
//! (humantime's `M` is a month), and the errors must show regsweep's forms.

use std::time::Duration;

/// A length of time as people write it. Parses from and prints to the same text, and
/// serialises as that text, so a plan says `"grace": "1h"` and `apply` reads it back whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(pub Duration);

impl Span {
    pub const ZERO: Span = Span(Duration::ZERO);

    pub fn from_secs(secs: u64) -> Span {
        Span(Duration::from_secs(secs))
    }
    pub fn as_secs(&self) -> u64 {
        self.0.as_secs()
    }
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Span, String> {
        parse(s).map(Span)
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl serde::Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The forms every duration error shows.
const FORMS: &str = "write e.g. 90s, 30m, 12h, 1h30m, 7d, 2w or 1y (\"1 hour\" and \"7 days\" too)";

/// Seconds in a unit, by its letter or its word (`h`, `hr`, `hour`, `hours`).
fn unit_secs(unit: &str) -> Option<u64> {
    Some(match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        "y" | "year" | "years" => 365 * 86_400,
        _ => return None,
    })
}

/// Parses a sequence of `<number><unit>` with units s, m, h, d, w, y (365 days), or their
/// words, spaces allowed between them (`1h30m`, `1 hour 30 minutes`); `0` alone is zero.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(format!("empty duration: {FORMS}"));
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number before {rest:?}; {FORMS}"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        rest = rest[digits..].trim_start();
        let len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..len];
        let secs = match unit_secs(unit) {
            Some(secs) => secs,
            None if unit.is_empty() => {
                return Err(format!(
                    "invalid duration {text:?}: missing unit after {n}; {FORMS}"
                ));
            }
            None => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {unit:?}; {FORMS}"
                ));
            }
        };
        rest = rest[len..].trim_start();
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration with the largest whole units, e.g. `1h`, `90d`, `1h30m`.
pub fn format(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse("12h").unwrap().as_secs(), 43_200);
        assert_eq!(parse("90d").unwrap().as_secs(), 90 * 86_400);
        assert_eq!(parse("2w").unwrap().as_secs(), 14 * 86_400);
        assert_eq!(parse("1y").unwrap().as_secs(), 365 * 86_400);
        assert_eq!(parse("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse("168h").unwrap().as_secs(), 168 * 3600);
        // As people type them after --grace.
        assert_eq!(parse("1 hour").unwrap().as_secs(), 3600);
        assert_eq!(parse("7 days").unwrap().as_secs(), 7 * 86_400);
        assert_eq!(parse("1h 30m").unwrap().as_secs(), 5400);
        assert_eq!(parse("2 weeks 1 day").unwrap().as_secs(), 15 * 86_400);
    }

    #[test]
    fn errors_name_the_input() {
        for bad in [
            "",
            "h",
            "10",
            "10x",
            "1.5h",
            "-1h",
            "99999999999999999999d",
            "1hé",
            "1 month",
            "1 h h",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("duration"), "{bad}: {e}");
        }
        // Every error shows the accepted forms.
        assert_eq!(
            parse("1 fortnight").unwrap_err(),
            r#"invalid duration "1 fortnight": unknown unit "fortnight"; write e.g. 90s, 30m, 12h, 1h30m, 7d, 2w or 1y ("1 hour" and "7 days" too)"#
        );
    }

    #[test]
    fn a_span_reads_and_writes_the_same_text() {
        let s: Span = "1h30m".parse().unwrap();
        assert_eq!(s.as_secs(), 5400);
        assert_eq!(s.to_string(), "1h30m");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"1h30m\"");
        assert_eq!(serde_json::from_str::<Span>(&json).unwrap(), s);
        assert!(serde_json::from_str::<Span>("\"10x\"").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format(Duration::from_secs(3600)), "1h");
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::ZERO), "0");
    }
}
