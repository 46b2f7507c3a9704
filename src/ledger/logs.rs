//! The registry's own log lines, read for pulls: its text (logfmt) and JSON formatters'
//! `response completed` lines and the combined access-log lines. A successful GET or HEAD of
//! `/v2/<name>/manifests/<reference>` is a pull of that tag or digest; any other line the
//! registry wrote only widens the span the log covers; lines of other programs are skipped.

use super::event::{Action, Event, valid_repository};
use crate::model::Time;
use crate::model::digest::Digest;
use crate::model::paths::valid_tag;

/// What one line is.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A manifest pulled.
    Pull(Event),
    /// A line the registry wrote, at this time, that is no pull.
    Registry(Time),
    /// Not the registry's.
    Other,
}

/// Reads one line in any of the registry's formats, with or without a journal's prefix.
pub fn parse_line(line: &str) -> Line {
    if let Some(i) = line.find('{')
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(line[i..].trim_end())
        && v.is_object()
    {
        return from_json(&v);
    }
    if let Some(i) = line.find("time=") {
        return from_logfmt(&line[i..]);
    }
    from_access_log(line)
}

/// A request's outcome, however the line spelled it.
struct Request<'a> {
    time: Time,
    method: &'a str,
    uri: &'a str,
    status: u16,
}

fn judge(r: Option<Request>, time: Option<Time>) -> Line {
    let Some(time) = time else {
        return Line::Other;
    };
    match r.and_then(pull) {
        Some(e) => Line::Pull(e),
        None => Line::Registry(time),
    }
}

/// The event a request is, when it is a successful manifest GET or HEAD.
fn pull(r: Request) -> Option<Event> {
    if !matches!(r.method, "GET" | "HEAD") || !matches!(r.status, 200 | 304) {
        return None;
    }
    let path = r.uri.split(['?', '#']).next()?;
    let rest = path.strip_prefix("/v2/")?;
    let (name, reference) = rest.rsplit_once("/manifests/")?;
    if !valid_repository(name) {
        return None;
    }
    let (tag, digest) = match Digest::parse(reference) {
        Some(d) => (None, Some(d)),
        None if valid_tag(reference) => (Some(reference.to_string()), None),
        None => return None,
    };
    Some(Event {
        time: r.time,
        action: Action::Pull,
        repository: name.to_string(),
        tag,
        digest,
    })
}

fn rfc3339(s: &str) -> Option<Time> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp())
}

/// The request a `response completed` line with every field reports.
fn completed<'a>(
    msg: Option<&str>,
    (method, uri): (Option<&'a str>, Option<&'a str>),
    status: Option<u64>,
    time: Option<Time>,
) -> Option<Request<'a>> {
    if msg != Some("response completed") {
        return None;
    }
    Some(Request {
        time: time?,
        method: method?,
        uri: uri?,
        status: u16::try_from(status?).ok()?,
    })
}

fn from_json(v: &serde_json::Value) -> Line {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str());
    if s("msg").is_none() || s("level").is_none() {
        return Line::Other;
    }
    let time = s("time").and_then(rfc3339);
    let status = v.get("http.response.status").and_then(|x| {
        x.as_u64()
            .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
    });
    let target = (s("http.request.method"), s("http.request.uri"));
    judge(completed(s("msg"), target, status, time), time)
}

/// `key=value key="quoted \"value\""` pairs.
fn logfmt(line: &str) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while let Some(eq) = rest.find('=') {
        let key = &rest[..eq];
        if key.is_empty() || key.contains(char::is_whitespace) {
            return out;
        }
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            match end {
                Some(e) => (value, &q[e..]),
                None => return out,
            }
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.push((key, value));
        rest = next.trim_start();
    }
    out
}

fn from_logfmt(line: &str) -> Line {
    let pairs = logfmt(line);
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.as_str())
    };
    if get("msg").is_none() || get("level").is_none() {
        return Line::Other;
    }
    let time = get("time").and_then(rfc3339);
    let status = get("http.response.status").and_then(|s| s.parse().ok());
    let target = (get("http.request.method"), get("http.request.uri"));
    judge(completed(get("msg"), target, status, time), time)
}

/// `HOST - USER [02/Jan/2006:15:04:05 -0700] "GET /uri HTTP/1.1" 200 SIZE "referer" "agent"`.
fn from_access_log(line: &str) -> Line {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r#"\[(\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) "#,
        )
        .expect("a valid expression")
    });
    let Some(c) = re.captures(line) else {
        return Line::Other;
    };
    let time = chrono::DateTime::parse_from_str(&c[1], "%d/%b/%Y:%H:%M:%S %z")
        .ok()
        .map(|t| t.timestamp());
    let r = time.zip(c[4].parse().ok()).map(|(time, status)| Request {
        time,
        method: c.get(2).map_or("", |m| m.as_str()),
        uri: c.get(3).map_or("", |m| m.as_str()),
        status,
    });
    judge(r, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn pulled(line: &str) -> (String, Option<String>, Option<String>) {
        match parse_line(line) {
            Line::Pull(e) => (e.repository, e.tag, e.digest.map(|d| d.to_string())),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn every_format_of_the_registry() {
        let text = r#"time="2026-12-04T19:55:01.1234Z" level=info msg="response completed" go.version=go1.19 http.request.host="127.0.0.1:5000" http.request.method=HEAD http.request.uri="/v2/team/app/manifests/v1" http.request.useragent="containerd/1.7 (x \"y\")" http.response.status=200"#;
        assert_eq!(pulled(text), ("team/app".into(), Some("v1".into()), None));
        let journal = format!("Dec 04 19:55:01 host docker-registry[9]: {text}");
        assert_eq!(pulled(&journal).1.as_deref(), Some("v1"));
        let json = format!(
            r#"{{"http.request.method":"GET","http.request.uri":"/v2/app/manifests/{D}","http.response.status":200,"level":"info","msg":"response completed","time":"2026-12-04T19:55:01Z"}}"#
        );
        assert_eq!(pulled(&json).2.as_deref(), Some(D));
        let access = r#"127.0.0.1 - - [04/Dec/2026:19:55:01 +0000] "GET /v2/app/manifests/latest HTTP/1.1" 200 528 "" "skopeo/1.13""#;
        assert_eq!(pulled(access).1.as_deref(), Some("latest"));
    }

    #[test]
    fn what_is_no_pull() {
        let registry = |l: &str| matches!(parse_line(l), Line::Registry(_));
        assert!(registry(
            r#"time="2026-12-04T19:55:01Z" level=info msg="response completed" http.request.method=GET http.request.uri="/v2/app/manifests/latest" http.response.status=404"#
        ));
        assert!(registry(
            r#"time="2026-12-04T19:55:01Z" level=info msg="response completed" http.request.method=GET http.request.uri="/v2/app/blobs/sha256:00" http.response.status=200"#
        ));
        assert!(registry(
            r#"time="2026-12-04T19:55:01Z" level=info msg="listening on 127.0.0.1:5000""#
        ));
        assert!(registry(
            r#"127.0.0.1 - - [04/Dec/2026:19:55:01 +0000] "PUT /v2/app/manifests/latest HTTP/1.1" 201 0 "" "x""#
        ));
        for other in [
            "",
            "kernel: eth0 up",
            "{\"a\": 1}",
            "time=bad level=info",
            "time=\"unterminated",
        ] {
            assert!(matches!(parse_line(other), Line::Other), "{other}");
        }
    }
}
