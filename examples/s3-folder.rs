//! An S3 endpoint serving a folder loaded into memory, whose every request costs a chosen delay:
//! the latency benchmarks' bucket (benches/s3-latency.sh reads it, benches/s3-sweep-folder.sh
//! sweeps it). The same read answers as benches/s3folder.py (ListObjects v1 and v2 with prefix,
//! delimiter, marker, continuation token, start-after and max-keys; GetObject with Range;
//! HeadObject; ETags the MD5 of the content), and the writes a sweep makes: PutObject (with
//! `If-None-Match: *` and `If-Match`, answered 412 when they fail), DeleteObject and
//! DeleteObjects (`POST ?delete`, up to 1,000 keys). A task per request, so that requests in
//! flight overlap as the client issues them. Writes change memory only, never the folder.
//!
//!     s3-folder PORT BUCKET ROOT DELAY_MS
//!
//! `GET /__stats` answers `{"requests": {...by kind}, "peak_in_flight": N, "objects": N,
//! "deleted_keys": N}` (not delayed, not counted); `POST /__reset` sets the counts to zero.

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::{Request, Response};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

struct Object {
    size: u64,
    mtime: i64,
    md5: String,
    /// The content, held for objects up to [`HELD`]; larger ones (the generator's sparse layers
    /// and uploads) are read from their file when asked for, and their ETag is the MD5 of their
    /// key and size instead of their content: a sweep never reads them.
    data: Option<Bytes>,
    file: Option<std::path::PathBuf>,
}

/// The largest object held in memory (manifests, links and small layers are far smaller).
const HELD: u64 = 256 * 1024;

impl Object {
    fn bytes(&self) -> Bytes {
        match (&self.data, &self.file) {
            (Some(d), _) => d.clone(),
            (None, Some(f)) => Bytes::from(std::fs::read(f).unwrap_or_default()),
            (None, None) => Bytes::new(),
        }
    }
}

struct State {
    bucket: String,
    objects: RwLock<BTreeMap<String, Object>>,
    delay: Duration,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    /// LIST, GET, HEAD, PUT, DELETE (a DeleteObjects request counts once).
    counts: [AtomicU64; 5],
    deleted_keys: AtomicU64,
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest as _;
    md5::Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn load(root: &std::path::Path) -> BTreeMap<String, Object> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
    {
        if !e.file_type().is_file() {
            continue;
        }
        let meta = e.metadata().unwrap();
        let mtime = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let held = meta.len() <= HELD;
        let data = if held {
            std::fs::read(e.path()).unwrap()
        } else {
            Vec::new()
        };
        let key = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        out.insert(
            key.clone(),
            Object {
                size: meta.len(),
                mtime,
                md5: if held {
                    md5_hex(&data)
                } else {
                    md5_hex(format!("{key}:{}", meta.len()).as_bytes())
                },
                data: held.then(|| Bytes::from(data)),
                file: (!held).then(|| e.path().to_path_buf()),
            },
        );
    }
    out
}

fn query(uri: &hyper::Uri) -> BTreeMap<String, String> {
    let q = uri.query().unwrap_or("");
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn iso(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S.000Z")
        .to_string()
}

/// Keys and common prefixes after `after`, at most `max` together; truncated; the last one.
fn listing<'a>(
    objects: &'a BTreeMap<String, Object>,
    prefix: &str,
    delim: &str,
    after: &str,
    max: usize,
) -> (Vec<(&'a str, &'a Object)>, Vec<String>, bool, String) {
    let (mut contents, mut prefixes, mut last) = (Vec::new(), Vec::new(), String::new());
    let mut from = if after.is_empty() || after < prefix {
        Bound::Included(prefix.to_string())
    } else {
        Bound::Excluded(after.to_string())
    };
    let mut truncated = false;
    while let Some((key, m)) = objects
        .range::<String, _>((from.clone(), Bound::Unbounded))
        .next()
    {
        if !key.starts_with(prefix) {
            break;
        }
        if contents.len() + prefixes.len() >= max {
            truncated = true;
            break;
        }
        if !delim.is_empty()
            && let Some(j) = key[prefix.len()..].find(delim)
        {
            let cp = key[..prefix.len() + j + delim.len()].to_string();
            let mut next = cp.clone().into_bytes();
            *next.last_mut().unwrap() += 1;
            from = Bound::Included(String::from_utf8_lossy(&next).into_owned());
            last = cp.clone();
            prefixes.push(cp);
            continue;
        }
        contents.push((key.as_str(), m));
        last = key.clone();
        from = Bound::Excluded(key.clone());
    }
    (contents, prefixes, truncated, last)
}

fn list(st: &State, q: &BTreeMap<String, String>) -> Response<Full<Bytes>> {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let v2 = get("list-type") == "2";
    let (prefix, delim) = (get("prefix"), get("delimiter"));
    let max = get("max-keys").parse().unwrap_or(1000).min(1000);
    let after = if v2 {
        Some(get("continuation-token"))
            .filter(|s| !s.is_empty())
            .unwrap_or(get("start-after"))
    } else {
        get("marker")
    };
    let objects = st.objects.read().unwrap();
    let (contents, prefixes, truncated, last) = listing(&objects, &prefix, &delim, &after, max);
    let mut o = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
    );
    o += &format!(
        "<Name>{}</Name><Prefix>{}</Prefix><MaxKeys>{max}</MaxKeys>",
        st.bucket,
        escape(&prefix)
    );
    if !delim.is_empty() {
        o += &format!("<Delimiter>{}</Delimiter>", escape(&delim));
    }
    o += &format!("<IsTruncated>{truncated}</IsTruncated>");
    if v2 {
        o += &format!("<KeyCount>{}</KeyCount>", contents.len() + prefixes.len());
        if truncated {
            o += &format!(
                "<NextContinuationToken>{}</NextContinuationToken>",
                escape(&last)
            );
        }
    } else {
        o += &format!("<Marker>{}</Marker>", escape(&after));
        if truncated && !delim.is_empty() {
            o += &format!("<NextMarker>{}</NextMarker>", escape(&last));
        }
    }
    for (k, m) in contents {
        o += &format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>&quot;{}&quot;</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            escape(k),
            iso(m.mtime),
            m.md5,
            m.size
        );
    }
    for p in prefixes {
        o += &format!(
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            escape(&p)
        );
    }
    o += "</ListBucketResult>";
    reply(
        200,
        Bytes::from(o),
        &[("content-type", "application/xml".into())],
    )
}

fn reply(code: u16, body: Bytes, headers: &[(&str, String)]) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
    for (k, v) in headers {
        let name = hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap();
        r.headers_mut().insert(name, v.parse().unwrap());
    }
    r
}

fn object(st: &State, req: &Request<hyper::body::Incoming>, key: &str) -> Response<Full<Bytes>> {
    let objects = st.objects.read().unwrap();
    let Some(m) = objects.get(key) else {
        return reply(
            404,
            Bytes::from_static(b"<Error><Code>NoSuchKey</Code></Error>"),
            &[],
        );
    };
    let date = chrono::DateTime::from_timestamp(m.mtime, 0)
        .unwrap()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let mut h = vec![
        ("etag", format!("\"{}\"", m.md5)),
        ("last-modified", date),
        ("accept-ranges", "bytes".into()),
    ];
    if req.method() == hyper::Method::HEAD {
        h.push(("content-length", m.size.to_string()));
        return reply(200, Bytes::new(), &h);
    }
    if let Some(r) = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
    {
        let (a, b) = r.split_once('-').unwrap_or((r, ""));
        let start: u64 = a.parse().unwrap_or(0);
        let end: u64 = b
            .parse()
            .unwrap_or(m.size.saturating_sub(1))
            .min(m.size.saturating_sub(1));
        if start >= m.size {
            return reply(416, Bytes::new(), &h);
        }
        h.push(("content-range", format!("bytes {start}-{end}/{}", m.size)));
        return reply(206, m.bytes().slice(start as usize..=end as usize), &h);
    }
    reply(200, m.bytes(), &h)
}

fn precondition_failed() -> Response<Full<Bytes>> {
    reply(
        412,
        Bytes::from_static(b"<Error><Code>PreconditionFailed</Code></Error>"),
        &[],
    )
}

/// PutObject, honouring `If-None-Match: *` (create only) and `If-Match: ETAG`.
fn put(st: &State, headers: &hyper::HeaderMap, key: &str, body: Bytes) -> Response<Full<Bytes>> {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut objects = st.objects.write().unwrap();
    let existing = objects.get(key).map(|m| format!("\"{}\"", m.md5));
    if header("if-none-match").as_deref() == Some("*") && existing.is_some() {
        return precondition_failed();
    }
    if let Some(want) = header("if-match")
        && existing.as_deref() != Some(want.as_str())
    {
        return precondition_failed();
    }
    let md5 = md5_hex(&body);
    let mtime = chrono::Utc::now().timestamp();
    let etag = format!("\"{md5}\"");
    let size = body.len() as u64;
    objects.insert(
        key.to_string(),
        Object {
            size,
            mtime,
            md5,
            data: Some(body),
            file: None,
        },
    );
    reply(200, Bytes::new(), &[("etag", etag)])
}

/// DeleteObjects: every `<Key>` of the body removed (a missing key is deleted too, as S3 says).
fn delete_many(st: &State, body: &[u8]) -> Response<Full<Bytes>> {
    let text = String::from_utf8_lossy(body);
    let quiet = text.contains("<Quiet>true</Quiet>");
    let keys: Vec<String> = (text.split("<Key>").skip(1))
        .filter_map(|k| k.split_once("</Key>").map(|(k, _)| unescape(k)))
        .collect();
    let mut objects = st.objects.write().unwrap();
    let mut o = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
    );
    for k in &keys {
        objects.remove(k);
        if !quiet {
            o += &format!("<Deleted><Key>{}</Key></Deleted>", escape(k));
        }
    }
    (st.deleted_keys).fetch_add(keys.len() as u64, Ordering::Relaxed);
    o += "</DeleteResult>";
    reply(
        200,
        Bytes::from(o),
        &[("content-type", "application/xml".into())],
    )
}

async fn serve(
    st: Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    if path == "/__stats" {
        let c = |i: usize| st.counts[i].load(Ordering::Relaxed);
        let body = format!(
            "{{\"requests\": {{\"list\": {}, \"get\": {}, \"head\": {}, \"put\": {}, \"delete\": {}}}, \"peak_in_flight\": {}, \"objects\": {}, \"deleted_keys\": {}}}",
            c(0),
            c(1),
            c(2),
            c(3),
            c(4),
            st.peak.load(Ordering::Relaxed),
            st.objects.read().unwrap().len(),
            st.deleted_keys.load(Ordering::Relaxed)
        );
        return Ok(reply(200, Bytes::from(body), &[]));
    }
    if path == "/__reset" {
        st.counts.iter().for_each(|c| c.store(0, Ordering::Relaxed));
        st.peak.store(0, Ordering::Relaxed);
        return Ok(reply(200, Bytes::new(), &[]));
    }
    let n = st.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    st.peak.fetch_max(n, Ordering::Relaxed);
    tokio::time::sleep(st.delay).await;
    let trimmed = path.trim_start_matches('/');
    let (bucket, key) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let key = decode(key);
    let method = req.method().clone();
    let r = if bucket != st.bucket {
        reply(
            404,
            Bytes::from_static(b"<Error><Code>NoSuchBucket</Code></Error>"),
            &[],
        )
    } else if method == hyper::Method::PUT
        || method == hyper::Method::POST
        || method == hyper::Method::DELETE
    {
        let is_batch = method == hyper::Method::POST && query(req.uri()).contains_key("delete");
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if method == hyper::Method::PUT && !key.is_empty() {
            st.counts[3].fetch_add(1, Ordering::Relaxed);
            put(&st, &parts.headers, &key, body)
        } else if method == hyper::Method::DELETE && !key.is_empty() {
            st.counts[4].fetch_add(1, Ordering::Relaxed);
            st.objects.write().unwrap().remove(&key);
            st.deleted_keys.fetch_add(1, Ordering::Relaxed);
            reply(204, Bytes::new(), &[])
        } else if is_batch && key.is_empty() {
            st.counts[4].fetch_add(1, Ordering::Relaxed);
            delete_many(&st, &body)
        } else {
            reply(
                501,
                Bytes::from_static(b"<Error><Code>NotImplemented</Code></Error>"),
                &[],
            )
        }
    } else if method != hyper::Method::GET && method != hyper::Method::HEAD {
        reply(
            501,
            Bytes::from_static(b"<Error><Code>NotImplemented</Code></Error>"),
            &[],
        )
    } else if key.is_empty() {
        st.counts[0].fetch_add(1, Ordering::Relaxed);
        list(&st, &query(req.uri()))
    } else {
        let i = if req.method() == hyper::Method::HEAD {
            2
        } else {
            1
        };
        st.counts[i].fetch_add(1, Ordering::Relaxed);
        object(&st, &req, &key)
    };
    st.in_flight.fetch_sub(1, Ordering::Relaxed);
    Ok(r)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (port, bucket, root, delay) = (
        &args[1],
        &args[2],
        &args[3],
        args[4].parse::<u64>().unwrap(),
    );
    let objects = load(std::path::Path::new(root));
    eprintln!("serving {} objects, {delay} ms a request", objects.len());
    let st = Arc::new(State {
        bucket: bucket.clone(),
        objects: RwLock::new(objects),
        delay: Duration::from_millis(delay),
        in_flight: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        counts: Default::default(),
        deleted_keys: AtomicU64::new(0),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let st = st.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| serve(st.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
