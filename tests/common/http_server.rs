//! A tiny HTTP/1.1 file server on 127.0.0.1 for download tests: honours `Range: bytes=N-`, and can
//! misbehave on purpose (cut the connection once, stall, say nothing at all, ignore ranges, answer
//! an error status). Every request is logged.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Behavior {
    Normal,
    /// The first response announces the full length but closes after this many bytes.
    CutOnceAfter(usize),
    /// Sends the headers and a few bytes, then nothing for a minute.
    Stall,
    /// Always answers 200 with the whole file, whatever the Range header says.
    IgnoreRange,
    /// Accepts the connection and reads the request, then sends nothing (not even headers) for a minute.
    Silent,
    /// Sends the headers (announcing the full length), then nothing for a minute.
    StallAfterHeaders,
    /// Answers this status (e.g. 403, 503) with an empty body.
    Status(u16),
}

struct Served {
    bytes: Vec<u8>,
    behavior: Behavior,
    cut_done: AtomicBool,
}

#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub path: String,
    pub range: Option<String>,
}

pub struct TestServer {
    pub base: String,
    log: Arc<Mutex<Vec<LoggedRequest>>>,
}

impl TestServer {
    /// Serves `files` (path → bytes, behaviour) until the test process ends.
    pub fn start(files: Vec<(&str, Vec<u8>, Behavior)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let files: Arc<HashMap<String, Served>> = Arc::new(
            files
                .into_iter()
                .map(|(p, bytes, behavior)| {
                    (
                        format!("/{}", p.trim_start_matches('/')),
                        Served { bytes, behavior, cut_done: AtomicBool::new(false) },
                    )
                })
                .collect(),
        );
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let files = files.clone();
                let log = log2.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &files, &log); // a client hanging up is fine
                });
            }
        });
        Self { base, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, files: &HashMap<String, Served>, log: &Mutex<Vec<LoggedRequest>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    log.lock().unwrap().push(LoggedRequest { path: path.clone(), range: range.clone() });
    let mut out = stream;
    let Some(file) = files.get(&path) else {
        return out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    match file.behavior {
        Behavior::Silent => {
            std::thread::sleep(Duration::from_secs(60));
            return Ok(());
        }
        Behavior::Status(code) => {
            let head = format!("HTTP/1.1 {code} Test Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return out.write_all(head.as_bytes());
        }
        _ => {}
    }
    let len = file.bytes.len();
    let start = range
        .as_deref()
        .filter(|_| file.behavior != Behavior::IgnoreRange)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (head, body) = match start {
        Some(s) if s >= len => (
            format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n"),
            &[][..],
        ),
        Some(s) => (
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\nContent-Length: {}\r\n",
                len - 1,
                len - s
            ),
            &file.bytes[s..],
        ),
        None => (format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n"), &file.bytes[..]),
    };
    out.write_all(format!("{head}Accept-Ranges: bytes\r\nConnection: close\r\n\r\n").as_bytes())?;
    match file.behavior {
        Behavior::CutOnceAfter(n) if !file.cut_done.swap(true, Ordering::SeqCst) => {
            out.write_all(&body[..n.min(body.len())])?;
            out.flush()?;
            out.shutdown(std::net::Shutdown::Both)
        }
        Behavior::Stall | Behavior::StallAfterHeaders => {
            let n = if file.behavior == Behavior::Stall { 16 } else { 0 };
            out.write_all(&body[..n.min(body.len())])?;
            out.flush()?;
            std::thread::sleep(Duration::from_secs(60));
            Ok(())
        }
        _ => out.write_all(body),
    }
}
