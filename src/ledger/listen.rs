//! The webhook receiver behind `regsweep pulls listen`: the registry's notification envelopes
//! checked (size, token, shape) and written to the ledger by one writer thread, which commits
//! what waits in one transaction (synced) before any of them is answered 200.

use super::Ledger;
use super::event::{Event, parse_envelope};
use crate::error::{Error, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

/// Counts kept while the listener runs; the report at its end.
#[derive(Debug, Default, serde::Serialize)]
pub struct ListenStats {
    pub envelopes_accepted: u64,
    pub events_recorded: u64,
    pub events_ignored: u64,
    pub rejected: u64,
    pub commits: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    recorded: AtomicU64,
    ignored: AtomicU64,
    rejected: AtomicU64,
    commits: AtomicU64,
}

/// A batch of events for the writer, and where to say it is on disk.
struct Job {
    events: Vec<Event>,
    done: tokio::sync::oneshot::Sender<std::result::Result<(), String>>,
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
/// Connections served at once; more wait to be accepted.
const CONNECTIONS: usize = 512;
/// How often a listener with nothing to write still marks the ledger as covered until now.
const HEARTBEAT: Duration = Duration::from_secs(30);
/// How long a request may take to send its headers or its body.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// The ledger's name for this source of events.
pub const SOURCE: &str = "webhook";

/// Runs until SIGTERM or SIGINT; `ready` is told the bound address once requests are served.
pub fn run(cfg: &ListenConfig, ready: &dyn Fn(SocketAddr)) -> Result<ListenStats> {
    let mut ledger = Ledger::open_write(&cfg.ledger)?;
    let started = chrono::Utc::now().timestamp();
    ledger.record(SOURCE, &[], Some((started, started)))?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
    let counters = Arc::new(Counters::default());
    let writer = {
        let counters = counters.clone();
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || write_loop(ledger, rx, started, &counters))
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
    })
}

/// The one writer: takes what waits (up to a batch), commits it, then answers every request of
/// the batch; marks the ledger covered until now on every commit and every heartbeat.
fn write_loop(
    mut ledger: Ledger,
    rx: Receiver<Job>,
    started: i64,
    counters: &Counters,
) -> std::result::Result<(), String> {
    loop {
        let first = match rx.recv_timeout(HEARTBEAT) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                let now = chrono::Utc::now().timestamp();
                if let Err(e) = ledger.record(SOURCE, &[], Some((started, now))) {
                    tracing::warn!("heartbeat not written: {e}");
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
        let events: Vec<Event> = jobs.iter().flat_map(|j| j.events.iter().cloned()).collect();
        let now = chrono::Utc::now().timestamp();
        let result = ledger
            .record(SOURCE, &events, Some((started, now)))
            .map_err(|e| e.to_string());
        if result.is_ok() {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters
                .recorded
                .fetch_add(events.len() as u64, Ordering::Relaxed);
        }
        for job in jobs {
            let _ = job.done.send(result.clone());
        }
    }
    let now = chrono::Utc::now().timestamp();
    ledger
        .record(SOURCE, &[], Some((started, now)))
        .map_err(|e| e.to_string())
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
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(|e| Error::Usage(e.to_string()))?,
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let state = state.clone();
        let service = hyper::service::service_fn(move |req| handle(req, state.clone(), peer));
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
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
    let (status, text) = match check_and_record(req, &state).await {
        Ok(text) => return Ok(reply(StatusCode::OK, text)),
        Err(e) => e,
    };
    if status != StatusCode::NOT_FOUND && status != StatusCode::SERVICE_UNAVAILABLE {
        state.counters.rejected.fetch_add(1, Ordering::Relaxed);
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
        let want = format!("Bearer {token}");
        if !given.is_some_and(|g| same(g, want.as_bytes())) {
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
    if parsed.events.is_empty() {
        count();
        return Ok("nothing to record".into());
    }
    let n = parsed.events.len();
    let (done, wait) = tokio::sync::oneshot::channel();
    match state.queue.try_send(Job {
        events: parsed.events,
        done,
    }) {
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

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
