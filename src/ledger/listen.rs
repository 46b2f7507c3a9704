//! The webhook receiver behind `regsweep pulls listen`: the registry's notification envelopes
//! checked (size, token, shape, dates) and written to the ledger by one writer thread, which
//! commits what waits in one transaction (synced) before any of them is answered 200; what it
//! refuses is counted in the ledger too, and `/metrics` shows both.

use super::canary::Canary;
use super::counters::{Counters, count_reason, metrics, note_instances};
use super::event::{Action, Event, Parsed, parse_envelope};
use super::{Evidence, Ledger, Refused};
use crate::error::{Error, Result};
use crate::model::Time;
use crate::model::coverage::stamp;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

/// What the listener runs with.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub addr: SocketAddr,
    pub ledger: PathBuf,
    /// The bearer token every request must carry; `None` checks none.
    pub token: Option<String>,
    /// The largest body accepted (the registry sends one event an envelope).
    pub max_body: usize,
    /// The silence between two events of one registry process that still counts as covered.
    pub tolerance: u64,
    /// `--canary`: the image pulled through the registry so that silence is never mistaken.
    pub canary: Option<Canary>,
}

/// Counts kept while the listener runs; the report at its end.
#[derive(Debug, Default, serde::Serialize)]
pub struct ListenStats {
    pub envelopes_accepted: u64,
    pub events_recorded: u64,
    pub events_ignored: u64,
    pub rejected: u64,
    pub commits: u64,
    pub canary_pulls: u64,
    pub canary_failures: u64,
}

/// What the writer is handed: an envelope to commit (answered once on disk), or a refusal to
/// count.
enum Job {
    Envelope {
        parsed: Parsed,
        done: tokio::sync::oneshot::Sender<std::result::Result<(), String>>,
    },
    Refused(Refused),
}

struct State {
    token: Option<String>,
    max_body: usize,
    queue: SyncSender<Job>,
    counters: Arc<Counters>,
}

/// Envelopes waiting for the writer before the listener answers 503 (the registry retries).
const QUEUE: usize = 4096;
/// Most envelopes one commit takes.
const BATCH: usize = 1024;
/// Connections open at once, and from one address: far more than a registry opens. When full,
/// the oldest connection that has sent nothing makes room (`peers`).
const CONNECTIONS: usize = 4096;
const PER_PEER: usize = 256;
/// How often a listener with nothing to write notes that it is alive (never coverage: only
/// what the registry delivers is).
const HEARTBEAT: Duration = Duration::from_secs(30);
/// How long a connection may take to send a request's headers: the registry sends them at
/// once, and idle sockets must not hold the listener.
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a request may take to send its body.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);
/// How far ahead of this host's clock an event may be dated before it is not believed.
pub const SKEW: Time = 300;

/// The ledger's name for this source of events.
pub const SOURCE: &str = "webhook";

/// Runs until SIGTERM or SIGINT; `ready` is told the bound address once requests are served.
pub fn run(cfg: &ListenConfig, ready: &dyn Fn(SocketAddr)) -> Result<ListenStats> {
    raise_fd_limit();
    let ledger = Ledger::open_write(&cfg.ledger)?;
    let created = (ledger.meta("created")?)
        .and_then(|t| t.parse::<Time>().ok())
        .unwrap_or(0);
    match &cfg.canary {
        Some(c) => ledger.set_meta("canary", &c.image())?,
        None => ledger.set_meta("canary", "")?,
    }
    ledger.set_meta("listener_alive", &now().to_string())?;
    // Without a token any local process can post: its events are pulls (they only keep),
    // never evidence that no pull was missed.
    let proves = cfg.token.is_some();
    ledger.set_meta(UNPROVEN, if proves { "" } else { "no token" })?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
    let counters = Arc::new(Counters::default());
    let writer = {
        let counters = counters.clone();
        let ctx = WriterCtx {
            tolerance: cfg.tolerance,
            canary: cfg.canary.as_ref().map(|c| c.repository.clone()),
            created,
            proves,
        };
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || write_loop(ledger, rx, &ctx, &counters))
            .map_err(|e| Error::io(&cfg.ledger, e))?
    };
    let state = Arc::new(State {
        token: cfg.token.clone(),
        max_body: cfg.max_body,
        queue: tx,
        counters: counters.clone(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::io(&cfg.ledger, e))?;
    if let Some(c) = &cfg.canary {
        rt.spawn(super::canary::run(c.clone(), counters.canary.clone()));
    }
    let served = rt.block_on(serve(cfg.addr, state, ready));
    rt.shutdown_timeout(DRAIN);
    // Every sender is gone once the server is: the writer commits what is left and ends.
    let written = writer
        .join()
        .unwrap_or_else(|_| Err("the writer stopped".into()));
    served?;
    if let Err(why) = written {
        return Err(Error::Ledger {
            path: cfg.ledger.clone(),
            message: why,
        });
    }
    let c = &counters;
    Ok(ListenStats {
        envelopes_accepted: c.accepted.load(Ordering::Relaxed),
        events_recorded: c.recorded.load(Ordering::Relaxed),
        events_ignored: c.ignored.load(Ordering::Relaxed),
        rejected: c.rejected.load(Ordering::Relaxed),
        commits: c.commits.load(Ordering::Relaxed),
        canary_pulls: c.canary.pulls.load(Ordering::Relaxed),
        canary_failures: c.canary.failures.load(Ordering::Relaxed),
    })
}

fn now() -> Time {
    chrono::Utc::now().timestamp()
}

/// Idle sockets are file descriptors: take the hard limit, so that they are closed by the
/// header timeout rather than refused by the kernel.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}

struct WriterCtx {
    tolerance: u64,
    /// The canary's repository: its pulls are marked as the canary's.
    canary: Option<String>,
    /// The ledger's creation: an event dated before it is a pull, never coverage.
    created: Time,
    /// Deliveries carry the listener's token: their events are evidence of coverage.
    proves: bool,
}

/// The ledger's `meta` key set while its listener takes events without a token.
pub const UNPROVEN: &str = "listener_unproven";

/// The one writer: takes what waits (up to a batch), commits it, then answers every envelope
/// of the batch. Coverage comes only from the events delivered, per registry process.
fn write_loop(
    mut ledger: Ledger,
    rx: Receiver<Job>,
    ctx: &WriterCtx,
    counters: &Counters,
) -> std::result::Result<(), String> {
    loop {
        let first = match rx.recv_timeout(HEARTBEAT) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = ledger.set_meta("listener_alive", &now().to_string()) {
                    tracing::warn!("liveness not written: {e}");
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut jobs = vec![first];
        while jobs.len() < BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let batch = gather(&jobs, ctx, counters);
        let result = ledger
            .record(&batch.events, &batch.evidence, &batch.refused)
            .map_err(|e| e.to_string());
        if result.is_ok() {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            (counters.recorded).fetch_add(batch.events.len() as u64, Ordering::Relaxed);
            note_instances(counters, &batch.evidence);
        }
        for job in jobs {
            if let Job::Envelope { done, .. } = job {
                let _ = done.send(result.clone());
            }
        }
    }
    ledger
        .set_meta("listener_alive", &now().to_string())
        .map_err(|e| e.to_string())
}

struct Batch {
    events: Vec<Event>,
    evidence: Vec<Evidence>,
    refused: Vec<Refused>,
}

/// A batch's events, its evidence per registry process, and what is not believed (dated
/// ahead of this clock). An event dated before the ledger began is a pull the registry queued
/// while nobody listened: recorded (a pull only keeps), but no evidence of coverage.
fn gather(jobs: &[Job], ctx: &WriterCtx, counters: &Counters) -> Batch {
    let now = now();
    let mut events = Vec::new();
    let mut evidence: BTreeMap<(String, String), Evidence> = BTreeMap::new();
    let mut refused = Vec::new();
    for job in jobs {
        let parsed = match job {
            Job::Refused(r) => {
                refused.push(r.clone());
                continue;
            }
            Job::Envelope { parsed, .. } => parsed,
        };
        for item in &parsed.items {
            let Some(t) = item.time else { continue };
            if t > now + SKEW {
                let reason = "event dated in the future";
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                count_reason(counters, 200, reason);
                refused.push(Refused {
                    source: SOURCE.into(),
                    status: 200,
                    reason: reason.into(),
                    detail: format!(
                        "{} from {} (now is {})",
                        stamp(t),
                        item.instance,
                        stamp(now)
                    ),
                    time: now,
                });
                continue;
            }
            if t < ctx.created || !ctx.proves {
                events.extend(item.event.clone());
                continue;
            }
            let ev = (evidence.entry((item.instance.clone(), item.process.clone())))
                .or_insert_with(|| Evidence {
                    source: SOURCE.into(),
                    instance: item.instance.clone(),
                    process: item.process.clone(),
                    tolerance: ctx.tolerance,
                    ..Evidence::default()
                });
            ev.points.push(t);
            if let Some(e) = &item.event {
                if e.action == Action::Pull && ctx.canary.as_deref() == Some(e.repository.as_str())
                {
                    ev.canaries.push(t);
                }
                events.push(e.clone());
            }
        }
    }
    Batch {
        events,
        evidence: evidence.into_values().collect(),
        refused,
    }
}

async fn serve(addr: SocketAddr, state: Arc<State>, ready: &dyn Fn(SocketAddr)) -> Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Usage(format!("{addr}: {e}")))?;
    ready(bound);
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let peers = Arc::new(super::peers::Peers::new(PER_PEER, CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors: wait for the header timeout to close idle ones.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let counters = state.counters.clone();
        let before = peers.open();
        let Some(admitted) = peers.admit(peer.ip()) else {
            counters.crowded.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        if peers.open() <= before {
            counters.crowded.fetch_add(1, Ordering::Relaxed);
        }
        counters.open.store(peers.open() as u64, Ordering::Relaxed);
        let state = state.clone();
        let service = hyper::service::service_fn(move |req| handle(req, state.clone(), peer));
        let io = super::peers::Spoke {
            inner: stream,
            flag: admitted.spoke.clone(),
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        let peers = peers.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {}
                // Made room for a newer one: dropping the connection closes it.
                _ = admitted.close.notified() => {}
            }
            peers.done(admitted.id);
            counters.open.store(peers.open() as u64, Ordering::Relaxed);
        });
    }
    drop(listener);
    drop(state);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
    Ok(())
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| Error::Usage(format!("cannot watch signals: {e}")))
}

fn reply(status: StatusCode, text: impl Into<String>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.into() + "\n")));
    *r.status_mut() = status;
    r
}

/// One request: checked, parsed, handed to the writer, answered once it is on disk.
async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    peer: SocketAddr,
) -> std::result::Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/metrics" {
        return Ok(reply(StatusCode::OK, metrics(&state.counters)));
    }
    let post = req.method() == hyper::Method::POST;
    let (status, text) = match check_and_record(req, &state).await {
        Ok(text) => return Ok(reply(StatusCode::OK, text)),
        Err(e) => e,
    };
    // A refused delivery is an alarm the ledger keeps; a retry later (503) is none, and neither
    // is anything but a POST (a curious `curl` is no delivery).
    if post && status != StatusCode::SERVICE_UNAVAILABLE {
        let reason = refusal_reason(status);
        state.counters.rejected.fetch_add(1, Ordering::Relaxed);
        count_reason(&state.counters, status.as_u16(), reason);
        let _ = state.queue.try_send(Job::Refused(Refused {
            source: SOURCE.into(),
            status: status.as_u16(),
            reason: reason.into(),
            detail: format!(
                "from {}: {}",
                peer.ip(),
                text.chars().take(200).collect::<String>()
            ),
            time: now(),
        }));
    }
    tracing::warn!("{peer}: {} {text}", status.as_u16());
    let mut r = reply(status, text);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            "www-authenticate",
            hyper::header::HeaderValue::from_static("Bearer"),
        );
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
    }
    Ok(r)
}

type Refusal = (StatusCode, String);

async fn check_and_record(
    req: Request<Incoming>,
    state: &State,
) -> std::result::Result<String, Refusal> {
    let path = req.uri().path();
    if path == "/healthz" {
        return Ok("ok".into());
    }
    if path != "/events" {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no {path} here: the registry's endpoint url ends in /events"),
        ));
    }
    if req.method() != hyper::Method::POST {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "POST events here".into()));
    }
    if let Some(token) = &state.token {
        let given = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !given.is_some_and(|g| bearer_is(g, token)) {
            return Err((
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token".into(),
            ));
        }
    }
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body as u64) {
        return Err(too_large(state.max_body));
    }
    let body = Limited::new(req.into_body(), state.max_body);
    let bytes = match tokio::time::timeout(READ_TIMEOUT, body.collect()).await {
        Err(_) => return Err((StatusCode::REQUEST_TIMEOUT, "the body took too long".into())),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(too_large(state.max_body));
        }
        Ok(Err(e)) => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
            ));
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    let parsed = parse_envelope(&bytes).map_err(|why| (StatusCode::BAD_REQUEST, why))?;
    // Counted once answered 200 only: an envelope refused with 503 is sent again.
    let c = &state.counters;
    let ignored = parsed.ignored as u64;
    let count = || {
        c.ignored.fetch_add(ignored, Ordering::Relaxed);
        c.accepted.fetch_add(1, Ordering::Relaxed);
    };
    if parsed.items.is_empty() {
        count();
        return Ok("nothing to record".into());
    }
    // Blob events too: each is evidence that the registry delivers.
    let n = parsed.items.len();
    let (done, wait) = tokio::sync::oneshot::channel();
    match state.queue.try_send(Job::Envelope { parsed, done }) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "the ledger is behind; retry".into(),
            ));
        }
        Err(TrySendError::Disconnected(_)) => {
            return Err((StatusCode::SERVICE_UNAVAILABLE, "stopping".into()));
        }
    }
    match wait.await {
        Ok(Ok(())) => {
            count();
            Ok(format!("recorded {n}"))
        }
        Ok(Err(why)) => Err((StatusCode::SERVICE_UNAVAILABLE, why)),
        Err(_) => Err((StatusCode::SERVICE_UNAVAILABLE, "stopping".into())),
    }
}

fn too_large(max: usize) -> Refusal {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {max} bytes (--max-body)"),
    )
}

/// The kind of a refusal, as the ledger counts it.
fn refusal_reason(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "missing or wrong bearer token",
        StatusCode::PAYLOAD_TOO_LARGE => "body too large",
        StatusCode::NOT_FOUND => "wrong path (the endpoint url ends in /events)",
        StatusCode::REQUEST_TIMEOUT => "body too slow",
        StatusCode::METHOD_NOT_ALLOWED => "not a POST",
        _ => "not a notification envelope",
    }
}

/// Whether an Authorization header is `Bearer TOKEN`, the scheme in any case (RFC 9110).
fn bearer_is(given: &[u8], token: &str) -> bool {
    let Some(sep) = given.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, rest) = given.split_at(sep);
    let creds = rest.trim_ascii_start();
    scheme.eq_ignore_ascii_case(b"bearer") & same(creds, token.as_bytes())
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::event::Item;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        assert!(bearer_is(b"Bearer s3cret", "s3cret"));
        assert!(bearer_is(b"bearer s3cret", "s3cret"));
        assert!(bearer_is(b"BEARER  s3cret", "s3cret"));
        assert!(!bearer_is(b"Basic s3cret", "s3cret"));
        assert!(!bearer_is(b"Bearer s3cre", "s3cret"));
        assert!(!bearer_is(b"Bearers3cret", "s3cret"));
        assert!(!bearer_is(b"", "s3cret"));
    }

    #[test]
    fn a_pull_queued_before_the_ledger_began_is_recorded_but_proves_nothing() {
        let created: Time = 1_767_312_000;
        let item = |t: Time| Item {
            time: Some(t),
            instance: "reg:5000".into(),
            process: "p1".into(),
            event: Some(Event {
                time: t,
                action: Action::Pull,
                repository: "app".into(),
                tag: Some("v1".into()),
                digest: None,
            }),
        };
        let (done, _rx) = tokio::sync::oneshot::channel();
        let parsed = Parsed {
            items: vec![item(created - 3600), item(created + 1)],
            ignored: 0,
        };
        let mut ctx = WriterCtx {
            tolerance: 300,
            canary: None,
            created,
            proves: true,
        };
        let counters = Counters::default();
        let batch = gather(&[Job::Envelope { parsed, done }], &ctx, &counters);
        assert_eq!(batch.events.len(), 2);
        assert!(batch.refused.is_empty());
        assert_eq!(batch.evidence.len(), 1);
        assert_eq!(batch.evidence[0].points, vec![ctx.created + 1]);
        assert_eq!(counters.rejected.load(Ordering::Relaxed), 0);
        // Taken without a token: both are pulls, neither is evidence.
        ctx.proves = false;
        let (done, _rx) = tokio::sync::oneshot::channel();
        let parsed = Parsed {
            items: vec![item(created - 3600), item(created + 1)],
            ignored: 0,
        };
        let batch = gather(&[Job::Envelope { parsed, done }], &ctx, &counters);
        assert_eq!(batch.events.len(), 2);
        assert!(batch.evidence.is_empty());
    }
}
