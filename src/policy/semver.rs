//! Semantic versions in tags (`v1.2.3`, `2.0.0-rc.1+build.5`), ordered by semver precedence.

use std::cmp::Ordering;

/// A parsed version; build metadata is dropped since it does not order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub core: [u64; 3],
    pub pre: Vec<Ident>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    Num(u64),
    Alpha(String),
}

impl Version {
    /// Parses `[v]MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]`; missing parts count as 0.
    pub fn parse(tag: &str) -> Option<Version> {
        let t = tag
            .strip_prefix('v')
            .or_else(|| tag.strip_prefix('V'))
            .unwrap_or(tag);
        // Tags cannot hold `+`; OCI tools (Helm) write build metadata after `_` instead.
        let t = t
            .split_once(['+', '_'])
            .map_or(t, |(v, build)| if build.is_empty() { "" } else { v });
        let (core, pre) = match t.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (t, None),
        };
        let mut parts = [0u64; 3];
        for (n, p) in core.split('.').enumerate() {
            if n == 3 || !numeric(p) {
                return None;
            }
            parts[n] = p.parse().ok()?;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(p) => p
                .split('.')
                .map(|id| {
                    if id.is_empty() || !id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                    {
                        None
                    } else if id.bytes().all(|c| c.is_ascii_digit()) {
                        id.parse().ok().map(Ident::Num)
                    } else {
                        Some(Ident::Alpha(id.to_string()))
                    }
                })
                .collect::<Option<Vec<_>>>()?,
        };
        Some(Version { core: parts, pre })
    }
}

fn numeric(p: &str) -> bool {
    !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) && (p == "0" || !p.starts_with('0'))
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core
            .cmp(&other.core)
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A pre-release comes before its release.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&other.pre) {
                        let o = match (a, b) {
                            (Ident::Num(x), Ident::Num(y)) => x.cmp(y),
                            (Ident::Num(_), Ident::Alpha(_)) => Ordering::Less,
                            (Ident::Alpha(_), Ident::Num(_)) => Ordering::Greater,
                            (Ident::Alpha(x), Ident::Alpha(y)) => x.cmp(y),
                        };
                        if o != Ordering::Equal {
                            return o;
                        }
                    }
                    self.pre.len().cmp(&other.pre.len())
                }
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn parses_common_tags() {
        assert_eq!(v("v1.2.3").core, [1, 2, 3]);
        assert_eq!(v("1.2").core, [1, 2, 0]);
        assert_eq!(v("3").core, [3, 0, 0]);
        assert_eq!(v("1.0.0+build.7").pre, vec![]);
        assert_eq!(v("1.0.0_build.7"), v("1.0.0"));
        assert_eq!(
            v("1.0.0-rc.1").pre,
            vec![Ident::Alpha("rc".into()), Ident::Num(1)]
        );
        for bad in [
            "latest",
            "v1.2.3.4",
            "1.02.3",
            "1..2",
            "",
            "v",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-a..b",
            "main-abc",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn precedence_follows_semver() {
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.10.0",
            "2.0.0",
        ];
        for w in order.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(v("1.0.0+a").cmp(&v("1.0.0+b")), Ordering::Equal);
        assert_eq!(v("v1.0.0"), v("1.0.0"));
    }
}
