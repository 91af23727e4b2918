//! exposure-api under overload, for `scripts/bench overload`: an open-loop load generator for
//! `POST /exposure` (oha has no per-status latencies).
//!
//! `CONNECTIONS` keep-alive connections, one thread each, send requests on a fixed schedule
//! that adds up to `RATE` per second (`RATE=0`: each connection sends back to back, the
//! closed-loop maximum) for `SECONDS`. A request's latency counts from when the schedule said
//! to send it, so a server that falls behind is charged for the wait (no coordinated
//! omission). Environment: `ADDR` (host:port), `RATE`, `SECONDS`, `CONNECTIONS`, `HEADERS`
//! (extra `Name: value` lines joined by `\n`). Prints one JSON line: per status, the count
//! and the p50, p99 and max latency in ms, and the 202s per second.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const BODY: &str = r#"{"ds_user_id":"bench-user","experiment_id":"bench-overload","variation_id":"treatment","attributes":{"country":"NL","plan":"pro"},"source":"bench"}"#;

fn main() -> ExitCode {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("overload: a benchmark for scripts/bench overload; nothing to test");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("overload: {e}");
            ExitCode::FAILURE
        }
    }
}

fn number(k: &str, default: u64) -> Result<u64, String> {
    match std::env::var(k) {
        Err(_) => Ok(default),
        Ok(v) => v.parse().map_err(|_| format!("{k}: {v:?} is not a number")),
    }
}

fn run() -> Result<String, String> {
    let addr = std::env::var("ADDR").map_err(|_| "ADDR is required (host:port)".to_string())?;
    let rate = number("RATE", 0)?;
    let seconds = number("SECONDS", 10)?;
    let connections = number("CONNECTIONS", 256)?.max(1);
    let headers: String = std::env::var("HEADERS")
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    let request = format!(
        "POST /exposure HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let (addr, request) = (addr.clone(), request.clone());
            std::thread::spawn(move || {
                // Connection c sends at start + (c + k·connections) / rate.
                let interval =
                    (rate > 0).then(|| Duration::from_secs_f64(connections as f64 / rate as f64));
                let offset =
                    interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / connections as f64));
                let mut out: Vec<(u16, Duration)> = Vec::new();
                let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
                let mut k: u32 = 0;
                loop {
                    let due = match interval {
                        Some(i) => start + offset + i * k,
                        None => Instant::now().max(start),
                    };
                    if due >= end {
                        break;
                    }
                    k += 1;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let status = send(&addr, &request, &mut conn).unwrap_or(0);
                    out.push((status, due.elapsed()));
                }
                out
            })
        })
        .collect();
    let mut by_status: BTreeMap<u16, Vec<Duration>> = BTreeMap::new();
    for t in threads {
        for (status, latency) in t.join().map_err(|_| "a connection thread panicked")? {
            by_status.entry(status).or_default().push(latency);
        }
    }
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    let mut statuses = Vec::new();
    for (status, lat) in &mut by_status {
        lat.sort();
        let at = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
        statuses.push(format!(
            r#""{status}":{{"count":{},"p50_ms":{},"p99_ms":{},"max_ms":{}}}"#,
            lat.len(),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(at(1.0))
        ));
    }
    let accepted = by_status.get(&202).map_or(0, Vec::len);
    Ok(format!(
        r#"{{"rate":{rate},"seconds":{seconds},"connections":{connections},"accepted_per_s":{:.0},"statuses":{{{}}}}}"#,
        accepted as f64 / seconds as f64,
        statuses.join(",")
    ))
}

/// Sends the request on the connection (opening one when needed) and returns the status;
/// `None` when no answer came (the connection is dropped and reopened next time).
fn send(
    addr: &str,
    request: &str,
    conn: &mut Option<(TcpStream, BufReader<TcpStream>)>,
) -> Option<u16> {
    if conn.is_none() {
        let stream = TcpStream::connect(addr).ok()?;
        stream.set_nodelay(true).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        let reader = BufReader::new(stream.try_clone().ok()?);
        *conn = Some((stream, reader));
    }
    let answer = (|| {
        let (stream, reader) = conn.as_mut()?;
        stream.write_all(request.as_bytes()).ok()?;
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':')?;
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            } else if name.eq_ignore_ascii_case("connection")
                && value.trim().eq_ignore_ascii_case("close")
            {
                close = true;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        Some((status, close))
    })();
    match answer {
        Some((status, close)) => {
            if close {
                *conn = None;
            }
            Some(status)
        }
        None => {
            *conn = None;
            None
        }
    }
}
