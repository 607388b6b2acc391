//! An open-loop, fixed-rate HTTP load generator: requests are due at a fixed rate whatever
//! the server does, and each one's latency is measured from the moment it was due, not from
//! when a connection was free to send it. A closed loop (wrk) waits for answers before it
//! sends more, so a stalled server is asked less and its stall never shows in the
//! percentiles (coordinated omission); here a stall makes every request due meanwhile late.
//!
//!   load-open-loop URL RATE SECONDS [CONNECTIONS] [Header: value]...
//!
//! Prints one line: `rate R sent N ok N non2xx N errors N late N p50 … p90 … p99 … p999 …
//! max … (ms)`. `late` counts requests that found no connection free when due (they wait
//! for one, and their wait is part of their latency). HTTP/1.1 keep-alive connections; a
//! connection the server closes is reopened.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a load tool's setup reports failure by panicking"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};

struct Target {
    addr: String,
    request: Vec<u8>,
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    non2xx: AtomicU64,
    errors: AtomicU64,
    late: AtomicU64,
}

fn parse_args() -> (Target, f64, f64, usize) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: load-open-loop URL RATE SECONDS [CONNECTIONS] [Header: value]...");
        std::process::exit(2);
    }
    let url = url::Url::parse(&args[0]).expect("URL");
    assert_eq!(url.scheme(), "http", "plain http only");
    let host = url.host_str().expect("host");
    let port = url.port_or_known_default().expect("port");
    let rate: f64 = args[1].parse().expect("RATE (requests/s)");
    let secs: f64 = args[2].parse().expect("SECONDS");
    let (connections, headers) = match args.get(3).map(|a| a.parse::<usize>()) {
        Some(Ok(n)) => (n, &args[4..]),
        _ => (64, &args[3..]),
    };
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path = format!("{path}?{q}");
    }
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let target = Target {
        addr: format!("{host}:{port}"),
        request: request.into_bytes(),
    };
    (target, rate, secs, connections)
}

/// Reads one response; returns its status. Bodies are read by Content-Length or chunked
/// framing so the connection can be reused.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status"))?;
    let mut length = 0usize;
    let mut chunked = false;
    for line in head.lines() {
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().map_err(|_| bad("content-length"))?;
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    buf.drain(..head_end);
    if chunked {
        // Read until the terminating zero-length chunk.
        loop {
            if let Some(i) = buf.windows(5).position(|w| w == b"0\r\n\r\n") {
                buf.drain(..i + 5);
                break;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    } else {
        while buf.len() < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..length);
    }
    Ok(status)
}

/// One keep-alive connection: takes due times off the shared queue, sends, records the
/// latency from the due time.
async fn connection(
    target: Arc<Target>,
    due: Arc<Mutex<mpsc::Receiver<Instant>>>,
    counts: Arc<Counts>,
) -> Vec<u32> {
    let mut latencies = Vec::new();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(8192);
    loop {
        let Some(when) = due.lock().await.recv().await else {
            return latencies;
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            if stream.is_none() {
                match TcpStream::connect(&target.addr).await {
                    Ok(s) => {
                        s.set_nodelay(true).ok();
                        stream = Some(s);
                        buf.clear();
                    }
                    Err(_) => {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            let s = stream.as_mut().expect("connected");
            let result = async {
                s.write_all(&target.request).await?;
                read_response(s, &mut buf).await
            }
            .await;
            match result {
                Ok(status) => {
                    let micros = when.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    latencies.push(micros);
                    if (200..300).contains(&status) {
                        counts.ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        counts.non2xx.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                // A keep-alive connection the server closed between requests: reopen once.
                Err(_) if attempt == 1 => stream = None,
                Err(_) => {
                    stream = None;
                    counts.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

fn main() {
    let (target, rate, secs, connections) = parse_args();
    let target = Arc::new(target);
    let counts = Arc::new(Counts::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The queue holds every request due and not yet taken by a connection: a request
    // waiting there is late, and its wait counts in its latency.
    let (tx, rx) = mpsc::channel::<Instant>(1_000_000);
    let rx = Arc::new(Mutex::new(rx));
    let total = (rate * secs).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let late = counts.clone();
    // The pacer runs on its own thread so a busy runtime cannot delay the schedule.
    let pacer = std::thread::spawn(move || {
        let start = Instant::now();
        for n in 0..total {
            let when = start + interval.mul_f64(n as f64);
            let now = Instant::now();
            if when > now {
                std::thread::sleep(when - now);
            }
            if tx.max_capacity() - tx.capacity() > 0 {
                late.late.fetch_add(1, Ordering::Relaxed);
            }
            if tx.blocking_send(when).is_err() {
                break;
            }
        }
    });
    let mut all: Vec<u32> = runtime.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(connection(target.clone(), rx.clone(), counts.clone())))
            .collect();
        let mut all = Vec::with_capacity(total as usize);
        for t in tasks {
            all.extend(t.await.expect("connection task"));
        }
        all
    });
    pacer.join().expect("pacer");
    all.sort_unstable();
    let ok = counts.ok.load(Ordering::Relaxed);
    let non2xx = counts.non2xx.load(Ordering::Relaxed);
    println!(
        "rate {rate} sent {total} ok {ok} non2xx {non2xx} errors {} late {} p50 {:.3} p90 {:.3} p99 {:.3} p999 {:.3} max {:.3} (ms)",
        counts.errors.load(Ordering::Relaxed),
        counts.late.load(Ordering::Relaxed),
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        all.last().map_or(f64::NAN, |m| f64::from(*m) / 1000.0),
    );
}
