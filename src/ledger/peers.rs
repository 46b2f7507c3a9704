//! Which connections the listener keeps: at most a number from one address and a number in all.
//! When full, the oldest connection that has not sent a byte is closed to make room, so idle
//! sockets from one host can neither starve another host nor keep a delivery waiting.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// One admitted connection: its number, whether it has sent anything, and the signal that
/// closes it to make room.
pub struct Conn {
    pub id: u64,
    pub spoke: Arc<AtomicBool>,
    pub close: Arc<Notify>,
}

struct Open {
    ip: IpAddr,
    spoke: Arc<AtomicBool>,
    close: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    /// By number, so the oldest comes first.
    open: BTreeMap<u64, Open>,
    per: HashMap<IpAddr, usize>,
}

/// The connections open, with their bounds.
pub struct Peers {
    per_peer: usize,
    total: usize,
    inner: Mutex<Inner>,
}

impl Peers {
    pub fn new(per_peer: usize, total: usize) -> Peers {
        Peers {
            per_peer,
            total,
            inner: Mutex::default(),
        }
    }

    /// Admits a connection from `ip`, closing the oldest silent one (of `ip` when `ip` is at
    /// its bound, of anyone when all are taken); `None` when every candidate has spoken.
    pub fn admit(&self, ip: IpAddr) -> Option<Conn> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.per.get(&ip).copied().unwrap_or(0) >= self.per_peer && !g.evict(|p| p == ip) {
            return None;
        }
        if g.open.len() >= self.total && !g.evict(|_| true) {
            return None;
        }
        let id = g.next;
        g.next += 1;
        let conn = Conn {
            id,
            spoke: Arc::default(),
            close: Arc::default(),
        };
        let open = Open {
            ip,
            spoke: conn.spoke.clone(),
            close: conn.close.clone(),
        };
        g.open.insert(id, open);
        *g.per.entry(ip).or_default() += 1;
        Some(conn)
    }

    /// A connection ended (or was closed).
    pub fn done(&self, id: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.forget(id);
    }

    pub fn open(&self) -> usize {
        self.inner.lock().map(|g| g.open.len()).unwrap_or(0)
    }
}

impl Inner {
    fn forget(&mut self, id: u64) -> Option<Open> {
        let o = self.open.remove(&id)?;
        if let Some(n) = self.per.get_mut(&o.ip) {
            *n -= 1;
            if *n == 0 {
                self.per.remove(&o.ip);
            }
        }
        Some(o)
    }

    /// Closes the oldest connection that `pick` takes and that has sent nothing.
    fn evict(&mut self, pick: impl Fn(IpAddr) -> bool) -> bool {
        let victim = (self.open.iter())
            .find(|(_, o)| pick(o.ip) && !o.spoke.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        let Some(o) = victim.and_then(|id| self.forget(id)) else {
            return false;
        };
        // A permit is kept if its task is not waiting yet.
        o.close.notify_one();
        true
    }
}

/// A stream that notes when its peer first sends something.
pub struct Spoke<S> {
    pub inner: S,
    pub flag: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Spoke<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.flag.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Spoke<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_cannot_crowd_out_another_and_a_speaker_is_never_dropped() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let peers = Peers::new(3, 5);
        let first: Vec<Conn> = (0..3).map(|_| peers.admit(a).unwrap()).collect();
        // At its bound, a's newest connection makes its oldest silent one go.
        first[0].spoke.store(true, Ordering::Relaxed);
        let fourth = peers.admit(a).unwrap();
        assert_eq!(peers.open(), 3);
        let closed = |c: &Conn| {
            let n = c.close.clone();
            futures_util::FutureExt::now_or_never(n.notified()).is_some()
        };
        assert!(!closed(&first[0]), "it had spoken");
        assert!(closed(&first[1]), "the oldest silent one");
        // b still gets in, up to the total; then the oldest silent of anyone goes.
        let b1 = peers.admit(b).unwrap();
        let _b2 = peers.admit(b).unwrap();
        assert_eq!(peers.open(), 5);
        let _b3 = peers.admit(b).unwrap();
        assert_eq!(peers.open(), 5);
        assert!(closed(&first[2]));
        assert!(!closed(&b1));
        // When every one has spoken, a newcomer is refused.
        for c in [&first[0], &fourth, &b1, &_b2, &_b3] {
            c.spoke.store(true, Ordering::Relaxed);
        }
        assert!(peers.admit(b).is_none());
        peers.done(b1.id);
        assert!(peers.admit(b).is_some());
    }
}
