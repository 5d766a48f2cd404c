//! Resumable HTTP(S) downloads: bytes go to `<file>.part`; a later attempt asks for the rest with a
//! `Range` request (servers that ignore it send everything again, which is detected). The file
//! gets its final name only once complete and verified.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::catalog::Fetched;
use super::checksum::{Checksum, verify_file};
use super::{DownloadError, Kept, Observer, Stage, ensure_free_space};

/// Network settings. Proxies come from the standard `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`
/// variables (either case) and `NO_PROXY`; the stall timeout from `SEGDISTILL_TIMEOUT` (seconds)
/// unless given explicitly.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Longest silence while waiting for data before giving up (the partial file is kept).
    pub stall_timeout: Duration,
    pub connect_timeout: Duration,
}

/// The stall timeouts accepted, in seconds (`--timeout`, `SEGDISTILL_TIMEOUT`).
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=86_400;
const DEFAULT_TIMEOUT_SECS: u64 = 30;

impl Default for HttpOptions {
    fn default() -> Self {
        Self { stall_timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS), connect_timeout: Duration::from_secs(20) }
    }
}

impl HttpOptions {
    /// The options for a download: the stall timeout from `secs` (`--timeout`), else from
    /// `SEGDISTILL_TIMEOUT`, else 30 s. A value outside [`TIMEOUT_RANGE`] or that is no number
    /// is refused with the range, not quietly replaced.
    pub fn with_timeout_secs(secs: Option<u64>) -> anyhow::Result<Self> {
        let (secs, source) = match secs {
            Some(s) => (s, "--timeout".to_string()),
            None => match std::env::var("SEGDISTILL_TIMEOUT") {
                Ok(text) => {
                    let s = text.trim().parse::<u64>().map_err(|_| {
                        anyhow::anyhow!(
                            "SEGDISTILL_TIMEOUT={} is not a number of seconds: use {} to {}",
                            crate::util::fmt::escaped(&text),
                            TIMEOUT_RANGE.start(),
                            TIMEOUT_RANGE.end()
                        )
                    })?;
                    (s, "SEGDISTILL_TIMEOUT".to_string())
                }
                Err(_) => (DEFAULT_TIMEOUT_SECS, String::new()),
            },
        };
        anyhow::ensure!(
            TIMEOUT_RANGE.contains(&secs),
            "{source} {secs} is out of range: use {} to {} seconds",
            TIMEOUT_RANGE.start(),
            TIMEOUT_RANGE.end()
        );
        Ok(Self { stall_timeout: Duration::from_secs(secs), ..Self::default() })
    }

    fn agent_for(&self, url: &str) -> Result<ureq::Agent, DownloadError> {
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(self.connect_timeout)
            .timeout_read(self.stall_timeout)
            .timeout_write(self.stall_timeout)
            .user_agent(concat!("segdistill/", env!("CARGO_PKG_VERSION")))
            .try_proxy_from_env(false);
        if let Some(proxy) = proxy_for(url, &|k| std::env::var(k).ok()) {
            let p = ureq::Proxy::new(&proxy)
                .map_err(|e| DownloadError::Invalid(format!("the proxy setting `{proxy}` is not usable: {e}")))?;
            builder = builder.proxy(p);
        }
        Ok(builder.build())
    }
}

fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

/// The proxy for `url` according to the usual environment variables (`env` looks one up).
fn proxy_for(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let get = |name: &str| env(name).or_else(|| env(&name.to_ascii_uppercase())).filter(|v| !v.trim().is_empty());
    let host = url_host(url).to_ascii_lowercase();
    // As Go's net/http does: loopback addresses never go through a proxy.
    if host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        return None;
    }
    if let Some(no_proxy) = get("no_proxy") {
        let bypass = no_proxy.split(',').map(|s| s.trim().trim_start_matches('.').to_ascii_lowercase()).any(|entry| {
            entry == "*" || (!entry.is_empty() && (host == entry || host.ends_with(&format!(".{entry}"))))
        });
        if bypass {
            return None;
        }
    }
    let scheme_var = if url.starts_with("https://") { "https_proxy" } else { "http_proxy" };
    get(scheme_var).or_else(|| get("all_proxy"))
}

/// The `.part` file a download of `dest` writes into.
pub fn part_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!("{name}.part"))
}

/// Downloads `url` to `dest`, resuming a previous `.part`, verifying `checksum` when given.
/// `extra_space` is what the caller will need on the same disk afterwards (e.g. to extract).
/// An existing `dest` that verifies is kept as is (`already_present`); one that does not is
/// downloaded again.
pub fn fetch(
    url: &str,
    dest: &Path,
    checksum: Option<&Checksum>,
    extra_space: u64,
    options: &HttpOptions,
    observer: &dyn Observer,
) -> Result<Fetched, DownloadError> {
    if dest.is_file() {
        match checksum.map(|c| verify_file(dest, c, observer)) {
            None | Some(Ok(())) => {
                observer.message(&format!("{} is already here", dest.display()));
                return Ok(Fetched { path: dest.to_path_buf(), already_present: true });
            }
            Some(Err(DownloadError::ChecksumMismatch { .. })) => {
                observer.message(&format!("{} does not match its checksum: downloading it again", dest.display()));
                std::fs::remove_file(dest).map_err(|e| DownloadError::io(dest, e))?;
            }
            Some(Err(e)) => return Err(e),
        }
    }
    check_url(url)?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DownloadError::io(dir, e))?;
    }
    let part = part_path(dest);
    receive(url, &part, extra_space, options, observer)?;
    if let Some(c) = checksum
        && let Err(e) = verify_file(&part, c, observer)
    {
        if matches!(e, DownloadError::ChecksumMismatch { .. }) {
            // A corrupt file would only corrupt the next resume: start over next time.
            std::fs::remove_file(&part).ok(); // already reported through `e`
        }
        return Err(e);
    }
    std::fs::rename(&part, dest).map_err(|e| DownloadError::io(dest, e))?;
    Ok(Fetched { path: dest.to_path_buf(), already_present: false })
}

/// Where the body of a response starts and how long the whole file is.
struct Span {
    start: u64,
    total: Option<u64>,
}

/// Parses `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`).
fn parse_content_range(value: &str) -> Option<Span> {
    let spec = value.trim().strip_prefix("bytes")?.trim();
    let (range, total) = spec.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some(Span { start: start.trim().parse().ok()?, total: total.trim().parse().ok() })
}

/// Refuses what is not an http(s) address before anything touches the disk or the network:
/// retrying cannot help such a download, and there is nothing to resume.
pub fn check_url(url: &str) -> Result<(), DownloadError> {
    let bad = |reason: String| Err(DownloadError::BadUrl { url: url.into(), reason });
    let scheme = url.trim().split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        None => return bad("it does not start with http:// or https://".into()),
        Some("http" | "https") => {}
        Some(s) => return bad(format!("`{s}://` addresses are not supported")),
    }
    // The same parser the request will use (the `url` crate, through ureq).
    let agent = ureq::AgentBuilder::new().try_proxy_from_env(false).build();
    match agent.get(url).request_url() {
        Ok(u) if u.host().is_empty() => bad("it names no host".into()),
        Ok(_) => Ok(()),
        Err(e) => bad(transport_reason(&e)),
    }
}

/// ureq's explanation without its "Bad URL: " style prefix.
fn transport_reason(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Transport(t) => t.message().map_or_else(|| t.to_string(), str::to_string),
        ureq::Error::Status(code, _) => format!("HTTP {code}"),
    }
}

fn transport_error(url: &str, part: &Path, got: u64, options: &HttpOptions, t: ureq::Transport) -> DownloadError {
    use ureq::ErrorKind as K;
    let timed_out = std::error::Error::source(&t)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|e| matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock));
    let kept = Kept::on_disk(part);
    match t.kind() {
        _ if timed_out => DownloadError::Stalled { url: url.into(), secs: options.stall_timeout.as_secs(), kept },
        K::InvalidUrl | K::UnknownScheme => {
            DownloadError::BadUrl { url: url.into(), reason: t.message().map_or_else(|| t.to_string(), str::to_string) }
        }
        K::Dns | K::ConnectionFailed | K::ProxyConnect => {
            DownloadError::Offline { host: url_host(url).into(), reason: t.to_string() }
        }
        _ => DownloadError::Interrupted { url: url.into(), got, total: "?".into(), reason: t.to_string(), kept },
    }
}

/// Brings `part` up to the full content of `url`.
fn receive(
    url: &str,
    part: &Path,
    extra_space: u64,
    options: &HttpOptions,
    observer: &dyn Observer,
) -> Result<(), DownloadError> {
    let agent = options.agent_for(url)?;
    let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut request = agent.get(url);
    if have > 0 {
        request = request.set("Range", &format!("bytes={have}-"));
    }
    let response = match request.call() {
        Ok(r) => r,
        // Asked for bytes past the end: the part file already holds everything.
        Err(ureq::Error::Status(416, r)) if have > 0 => {
            let total =
                r.header("Content-Range").and_then(|v| v.rsplit('/').next()).and_then(|t| t.trim().parse().ok());
            if total == Some(have) {
                return Ok(());
            }
            // The part is longer than the file or unknown: start over.
            std::fs::remove_file(part).map_err(|e| DownloadError::io(part, e))?;
            return receive(url, part, extra_space, options, observer);
        }
        Err(ureq::Error::Status(status, r)) => {
            return Err(DownloadError::Http {
                url: url.into(),
                status,
                text: r.status_text().to_string(),
                kept: Kept::on_disk(part),
            });
        }
        Err(ureq::Error::Transport(t)) => return Err(transport_error(url, part, have, options, t)),
    };
    let length = response.header("Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
    let span = if response.status() == 206 {
        response.header("Content-Range").and_then(parse_content_range).unwrap_or(Span { start: have, total: None })
    } else {
        Span { start: 0, total: length }
    };
    if span.start != have {
        // The server ignored the range (200) or answered another one: keep only what matches.
        observer.message("the server cannot resume this download: starting from the beginning");
        have = 0;
    }
    let total = span.total.or_else(|| length.map(|l| l + have));
    if let Some(t) = total {
        ensure_free_space(part.parent().unwrap_or(Path::new(".")), t.saturating_sub(have) + extra_space)?;
    }
    // Not truncated before the lock is held: another writer's bytes must not be clobbered.
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .append(have > 0)
        .open(part)
        .map_err(|e| DownloadError::io(part, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(DownloadError::Busy { part: part.into() }),
        // File systems without locks: go on unguarded.
        Err(std::fs::TryLockError::Error(_)) => {}
    }
    if have == 0 {
        file.set_len(0).map_err(|e| DownloadError::io(part, e))?;
    }
    let name = part.file_name().map(|n| n.to_string_lossy().trim_end_matches(".part").to_string()).unwrap_or_default();
    observer.stage(Stage::Downloading { file: name, resumed_from: have }, total);
    observer.advance(have);
    let mut got = have;
    let result = copy_body(response.into_reader(), &mut file, &mut got, observer).and_then(|()| {
        file.sync_all().map_err(Body::Write)?;
        match total {
            Some(t) if got != t => Err(Body::Read(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection early",
            ))),
            _ => Ok(()),
        }
    });
    let Err(e) = result else { return Ok(()) };
    if got == 0 {
        // Nothing arrived: an empty `.part` would only suggest there is something to resume. Still
        // ours (locked), so no other download is using it.
        std::fs::remove_file(part).ok(); // the error below is what matters
    }
    Err(match e {
        Body::Cancelled => DownloadError::Cancelled,
        Body::Write(e) => DownloadError::io(part, e),
        Body::Read(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
            DownloadError::Stalled { url: url.into(), secs: options.stall_timeout.as_secs(), kept: Kept::on_disk(part) }
        }
        Body::Read(e) => DownloadError::Interrupted {
            url: url.into(),
            got,
            total: total.map_or("?".into(), |t| t.to_string()),
            reason: e.to_string(),
            kept: Kept::on_disk(part),
        },
    })
}

/// Why copying a response body stopped early.
enum Body {
    Cancelled,
    /// Receiving failed (timeout, broken connection, early end).
    Read(std::io::Error),
    /// Writing the `.part` file failed (full disk…).
    Write(std::io::Error),
}

/// Appends the body to `file`, counting into `got`, until the body ends or fails.
fn copy_body(
    mut body: impl Read,
    file: &mut std::fs::File,
    got: &mut u64,
    observer: &dyn Observer,
) -> Result<(), Body> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if observer.cancelled() {
            file.flush().ok(); // what was written stays for the resume
            return Err(Body::Cancelled);
        }
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Body::Read(e)),
        };
        file.write_all(&buf[..n]).map_err(Body::Write)?;
        *got += n as u64;
        observer.advance(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn proxies_follow_scheme_and_no_proxy() {
        let env = env_of(&[
            ("HTTPS_PROXY", "http://p:3128"),
            ("http_proxy", "http://q:8080"),
            ("NO_PROXY", "localhost,.internal.org"),
        ]);
        assert_eq!(proxy_for("https://download.pytorch.org/x", &env).as_deref(), Some("http://p:3128"));
        assert_eq!(proxy_for("http://host.robots.ox.ac.uk/x", &env).as_deref(), Some("http://q:8080"));
        assert_eq!(proxy_for("http://localhost:8000/x", &env), None);
        let everything = env_of(&[("HTTP_PROXY", "http://q:8080")]);
        assert_eq!(proxy_for("http://127.0.0.1:8000/x", &everything), None, "loopback bypasses the proxy");
        assert_eq!(proxy_for("http://[::1]:8000/x", &everything), None);
        assert_eq!(proxy_for("https://files.internal.org/x", &env), None);
        assert_eq!(
            proxy_for("https://a.b/x", &env_of(&[("ALL_PROXY", "socks5://s:1")])).as_deref(),
            Some("socks5://s:1")
        );
        assert_eq!(proxy_for("https://a.b/x", &env_of(&[])), None);
    }

    #[test]
    fn only_http_and_https_addresses_pass() {
        for ok in ["http://127.0.0.1:8/a.tar", "https://download.pytorch.org/models/x.pth", "HTTPS://H/x?dl=1"] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        // (address, what the reason must say)
        let cases = [
            ("ftp://h/a.tar", "`ftp://` addresses are not supported"),
            ("file:///a.tar", "`file://` addresses are not supported"),
            ("h/a.tar", "does not start with http"),
            ("", "does not start with http"),
            ("http://", ""),
            ("http://exa mple.org/a", ""),
        ];
        for (url, says) in cases {
            match check_url(url) {
                Err(DownloadError::BadUrl { url: u, reason }) => {
                    assert!(u == url && reason.contains(says), "{url:?}: {reason}");
                }
                other => panic!("{url:?} must be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn hosts_and_content_ranges_parse() {
        assert_eq!(url_host("http://user:pw@127.0.0.1:8080/a/b.tar"), "127.0.0.1");
        assert_eq!(url_host("https://[::1]:99/x"), "::1");
        let s = parse_content_range("bytes 100-199/200").unwrap();
        assert_eq!((s.start, s.total), (100, Some(200)));
        assert_eq!(parse_content_range("bytes 5-9/*").unwrap().total, None);
        assert!(parse_content_range("items 1-2/3").is_none());
        assert_eq!(part_path(Path::new("/w/a.pth")), PathBuf::from("/w/a.pth.part"));
    }
}
