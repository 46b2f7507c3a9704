//! URLs of endpoints (an object store's, the live registry's) checked before any client sees
//! them: a dependency may panic on less; and the TLS provider every client needs.

/// Installs ring as the process's TLS provider (reqwest and object_store are built without
/// one, so that only ring is compiled): called before any HTTP client is built. Installing
/// twice is harmless.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Checks an object-store endpoint before any client sees it: `http://` or `https://`, a host,
/// an optional port and path, nothing else (a dependency may panic on less).
pub fn check(text: &str) -> std::result::Result<(), String> {
    let hint = "give a URL such as http://127.0.0.1:9000 or https://s3.example.com";
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or_else(|| format!("{text:?} has no http:// or https:// scheme; {hint}"))?;
    let bad = |why: &str| format!("{text:?}: {why}; {hint}");
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err(bad("spaces, control or non-ASCII characters"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if rest[authority.len()..].contains(['?', '#']) {
        return Err(bad("a query or fragment"));
    }
    if authority.contains('@') {
        return Err(bad("credentials in the URL (give them as keys)"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (authority, None), // bare IPv6
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(bad("the port is not a number from 1 to 65535"));
    }
    let host_ok = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok()),
        None => host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')),
    };
    if !host_ok {
        return Err(bad("not a host name or address"));
    }
    // The last word: the URI type the HTTP stack builds requests from.
    text.parse::<http::Uri>()
        .map(|_| ())
        .map_err(|e| bad(&e.to_string()))
}
