//! What a failed request says, in a line: the store's error code, HTTP status and message (S3's
//! and Azure's XML bodies alike), or the connection's root cause, instead of the crate's page
//! of text; kept whole beside it, for telling the cause.

use std::io;

/// The first line of a message (the crate's errors run over several).
pub(super) fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

/// An object-store error: shown as its line, kept whole.
#[derive(Debug)]
pub(super) struct StoreError {
    pub(super) short: String,
    pub(super) full: String,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.short)
    }
}

impl std::error::Error for StoreError {}

/// The crate's error as an I/O error of the matching kind (a missing object is `NotFound`),
/// its message condensed.
pub(super) fn io_error(e: object_store::Error) -> io::Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    let full = e.to_string();
    let cause = root_cause(&e);
    let short = s3_error(&full)
        .or_else(|| (cause != first_line(&full)).then_some(cause))
        .unwrap_or_else(|| first_line(&full));
    io::Error::new(kind, StoreError { short, full })
}

/// Reads the store did not answer about the object they asked for (a timeout, a connection
/// refused or reset, a 5xx, access denied: after the crate's retries). What such a read would
/// have shown is unknown, so it is no damage to sweep past: the run fails before it plans.
#[derive(Debug, Default)]
pub(super) struct Unanswered {
    count: std::sync::atomic::AtomicU64,
    first: std::sync::Mutex<Option<String>>,
}

impl Unanswered {
    /// The crate's error as an I/O error, noted when it is no answer about the object.
    pub(super) fn note(&self, e: object_store::Error) -> io::Error {
        let answered = matches!(
            e,
            object_store::Error::NotFound { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotModified { .. }
        );
        let e = io_error(e);
        if !answered {
            (self.count).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| describe(&e));
        }
        e
    }

    /// How many reads went unanswered, and why the first did.
    pub(super) fn summary(&self) -> Option<String> {
        let n = self.count.load(std::sync::atomic::Ordering::Relaxed);
        let first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        let why = first.as_deref()?;
        Some(if n == 1 {
            format!("a read got no answer after retries: {why}")
        } else {
            format!("{n} reads got no answer after retries; the first: {why}")
        })
    }
}

/// One line on why a request failed, in the operator's words where the cause is known.
pub(super) fn describe(e: &io::Error) -> String {
    // The store's words, condensed, and the crate's full text to tell the cause by.
    let (said, full) = match e.get_ref().and_then(|i| i.downcast_ref::<StoreError>()) {
        Some(s) => (s.short.clone(), s.full.clone()),
        None => (first_line(&e.to_string()), e.to_string()),
    };
    let lower = full.to_lowercase();
    // Without keys the crate asks the instance metadata service (IMDS), wherever it is.
    let metadata = ["169.254.169.254", "/latest/api/token", "/latest/meta-data"];
    if metadata.iter().any(|m| lower.contains(m)) || lower.contains("credential") {
        format!(
            "no usable credentials (give the config's accesskey/secretkey, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a web identity or instance metadata): {said}"
        )
    } else if lower.contains("nosuchbucket") || lower.contains("bucket does not exist") {
        format!("no such bucket: {said}")
    } else if e.kind() == io::ErrorKind::PermissionDenied
        || lower.contains("accessdenied")
        // The status as the crate words it: a bare "403" also matches a port or a time.
        || lower.contains("403 forbidden")
    {
        format!("access denied (check the credentials and the bucket policy): {said}")
    } else if lower.contains("connect")
        || lower.contains("dns")
        || lower.contains("error sending request")
    {
        match url_in(&full) {
            Some(url) => format!("cannot reach the endpoint {url}: {said}"),
            None => format!("cannot reach the endpoint: {said}"),
        }
    } else {
        said
    }
}

/// The scheme, host and port of the first URL the crate's text names: where a connection went.
fn url_in(text: &str) -> Option<String> {
    let at = text.find("http://").or_else(|| text.find("https://"))?;
    let rest = &text[at..];
    let scheme_end = rest.find("://")? + 3;
    let end = (rest[scheme_end..].find(['/', ')', ' ', '"', '\'']))
        .map_or(rest.len(), |i| i + scheme_end);
    Some(rest[..end].to_string())
}

/// The S3 error code, HTTP status and message in a response body the crate quotes, as
/// `InvalidAccessKeyId (HTTP 403): The AWS Access Key Id you provided does not exist in our records.`
fn s3_error(text: &str) -> Option<String> {
    let element = |name: &str| {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        let start = text.find(&open)? + open.len();
        let len = text[start..].find(&close)?;
        Some(text[start..start + len].trim().to_string())
    };
    let code = element("Code")?;
    // The HTTP status, as the crate quotes it ("status code: 503 Service Unavailable").
    let status = text
        .split_once("status code: ")
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty());
    let code = match status {
        Some(s) => format!("{code} (HTTP {s})"),
        None => code,
    };
    Some(match element("Message") {
        Some(m) if !m.is_empty() => format!("{code}: {m}"),
        _ => code,
    })
}

/// The innermost error under `e`: "Connection refused (os error 111)" rather than the crate's
/// "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    first_line(&last.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_error_is_one_line_with_its_code_and_the_whole_text_is_kept() {
        let body = "Error performing GET http://h/b/k in 3ms - Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?>\n<Error><Code>AuthorizationFailure</Code><Message>This request is not authorized.</Message></Error>";
        let e = io_error(object_store::Error::Generic {
            store: "MicrosoftAzure",
            source: body.into(),
        });
        assert_eq!(
            e.to_string(),
            "AuthorizationFailure (HTTP 403): This request is not authorized."
        );
        assert!(
            describe(&e).starts_with("access denied"),
            "{}",
            describe(&e)
        );
        let missing = io_error(object_store::Error::NotFound {
            path: "k".into(),
            source: "gone".into(),
        });
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}
