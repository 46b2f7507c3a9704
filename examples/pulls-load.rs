//! Load for `regsweep pulls listen`: C clients on keep-alive connections each POST notification
//! envelopes (one manifest pull each, as the registry sends them) until N are acknowledged;
//! prints events per second and any refusals. Used by benches/listen.sh.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn envelope(client: usize, i: usize) -> String {
    let digest = format!("sha256:{:064x}", (client as u128) << 64 | i as u128);
    let now = chrono::Utc::now().to_rfc3339();
    serde_json::json!({"events": [{
        "id": format!("{client}-{i}"), "timestamp": now, "action": "pull",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                   "size": 528, "length": 528, "repository": format!("team/app-{}", i % 500),
                   "url": format!("http://registry:5000/v2/team/app/manifests/{digest}"),
                   "tag": format!("build-{client}-{i}")},
        "request": {"id": "r", "addr": "10.0.0.1:4000", "host": "registry:5000",
                    "method": "GET", "useragent": "containerd/1.7"},
        "actor": {}, "source": {"addr": "registry:5000", "instanceID": "i"}
    }]})
    .to_string()
}

/// Sends `n` envelopes on one connection; how many were answered 200.
fn client(addr: &str, c: usize, n: usize) -> usize {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut ok = 0;
    for i in 0..n {
        let body = envelope(c, i);
        let req = format!(
            "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(req.as_bytes()).is_err() {
            break;
        }
        let mut status = String::new();
        if r.read_line(&mut status).unwrap_or(0) == 0 {
            break;
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h == "\r\n" || h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        if status.split_whitespace().nth(1) == Some("200") {
            ok += 1;
        }
    }
    ok
}

fn main() {
    let addr = arg("--addr", "127.0.0.1:5080");
    let events: usize = arg("--events", "20000").parse().unwrap();
    let clients: usize = arg("--clients", "8").parse().unwrap();
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || client(&addr, c, events / clients))
        })
        .collect();
    let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"events\": {}, \"acknowledged\": {ok}, \"seconds\": {secs:.3}, \"per_second\": {:.0}}}",
        events / clients * clients,
        ok as f64 / secs
    );
}
