//! Helpers shared by oceanflow's cross-crate tests: locating the built binary, free loopback
//! ports, child processes that die with the test, bounded polling, and a tiny blocking HTTP
//! client for loopback servers (oceanflow's API, a real Prometheus).
//!
//! The HTTP client speaks plain HTTP/1.1 over `std::net::TcpStream` on purpose: every server a
//! test talks to is on 127.0.0.1, so no TLS, proxy or redirect support is needed, and the test
//! crate needs no HTTP dependency.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

pub mod compare;
pub mod exact;
pub mod fixtures;
pub mod kafka;
pub mod oracle;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent directory")
        .to_path_buf()
}

/// Path of the `oceanflow` binary under test: `$OCEANFLOW_BIN` if set (scripts/test.sh sets it),
/// else `<workspace>/target/debug/oceanflow`. Panics with a clear message if it does not exist.
pub fn oceanflow_bin() -> PathBuf {
    let path = match std::env::var_os("OCEANFLOW_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"));
            target.join("debug").join("oceanflow")
        }
    };
    if !path.is_file() {
        panic!(
            "oceanflow binary not found at {}: build it with `cargo build -p oceanflow-pipeline` \
             (or run ./scripts/test.sh, which builds it and sets OCEANFLOW_BIN)",
            path.display()
        );
    }
    path
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// Owns a child process and kills (then reaps) it when dropped, so a failing test never leaves
/// a server running.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
}

impl ChildGuard {
    /// Wraps an already spawned child. `name` appears in diagnostics.
    pub fn new(name: impl Into<String>, child: Child) -> ChildGuard {
        ChildGuard {
            child: Some(child),
            name: name.into(),
        }
    }

    /// Spawns `cmd` with stdin closed and wraps it.
    pub fn spawn(name: impl Into<String>, cmd: &mut Command) -> Result<ChildGuard> {
        let name = name.into();
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        Ok(ChildGuard::new(name, child))
    }

    /// The OS process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Fails if the child has already exited (e.g. it could not bind its port).
    pub fn check_running(&mut self) -> Result<()> {
        let child = self.child.as_mut().expect("child present until drop");
        match child.try_wait()? {
            Some(status) => bail!("{} exited early with {status}", self.name),
            None => Ok(()),
        }
    }

    /// Waits for the child to exit, polling every 5 ms, at most `limit`; `None` if it is still
    /// running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut().expect("child present until drop");
        wait_until_every(limit, Duration::from_millis(5), || {
            child.try_wait().ok().flatten()
        })
    }

    /// Sends signal `name` (`TERM`, `KILL`, …) with kill(1); panics if it cannot be sent.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {} failed", self.name);
    }

    /// Mutable access to the child (e.g. to take its stdout).
    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child present until drop")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Calls `probe` every `poll` (starting immediately) until it returns `Some`, or until
/// `timeout` has passed, in which case it returns `None`.
pub fn wait_until_every<T>(
    timeout: Duration,
    poll: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(poll.min(deadline - now));
    }
}

/// [`wait_until_every`] with a 50 ms poll interval.
pub fn wait_until<T>(timeout: Duration, probe: impl FnMut() -> Option<T>) -> Option<T> {
    wait_until_every(timeout, Duration::from_millis(50), probe)
}

/// Percent-encodes a query-string component (RFC 3986 unreserved characters pass through).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A response of [`http_get_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked, as UTF-8 (lossy).
    pub body: String,
}

/// GETs `url` (`http://host:port/path?query` only) and returns the body when the status is
/// 2xx; any other status, or a connection error, is an `Err`. 10 s timeouts throughout.
pub fn http_get(url: &str) -> Result<String> {
    let resp = http_get_response(url)?;
    if !(200..300).contains(&resp.status) {
        bail!(
            "GET {url}: HTTP {}: {}",
            resp.status,
            truncate(&resp.body, 500)
        );
    }
    Ok(resp.body)
}

/// GETs `url` and returns status, headers and body whatever the status.
pub fn http_get_response(url: &str) -> Result<HttpResponse> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let timeout = Duration::from_secs(10);
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .ok_or_else(|| anyhow!("no address for {authority}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {authority}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: oceanflow-tests\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()?;

    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("GET {url}: bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let chunked = header("transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let size_str = size_line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_str, 16)
                .with_context(|| format!("GET {url}: bad chunk size {size_line:?}"))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The aggregates a running oceanflow serves on `port`, as one document shaped like its
/// `--output` (`stations`, `temporal` and `regions` from `/api/v1/*`): how a test reads the
/// aggregates of a live feed, which a stopped `--once` run does not write.
pub fn api_snapshot(port: u16) -> Result<serde_json::Value> {
    let mut doc = serde_json::Map::new();
    for table in ["stations", "temporal", "regions"] {
        let body = http_get(&format!("http://127.0.0.1:{port}/api/v1/{table}"))?;
        let rows: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("/api/v1/{table} is not JSON"))?;
        doc.insert(table.to_string(), rows);
    }
    Ok(serde_json::Value::Object(doc))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Finds `name` on `$PATH` (like `which`).
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A Python interpreter with `tests/python/requirements.txt` installed: `$OCEANFLOW_PYTHON` if
/// set (scripts/test.sh sets it), else the virtualenv `scripts/python-env.sh` builds (once).
pub fn python() -> Result<PathBuf> {
    static PYTHON: std::sync::OnceLock<std::result::Result<PathBuf, String>> =
        std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("OCEANFLOW_PYTHON").filter(|p| !p.is_empty()) {
                return Ok(PathBuf::from(p));
            }
            let script = workspace_root().join("scripts/python-env.sh");
            let out = Command::new(&script)
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("running {}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!("{} failed: {}", script.display(), out.status));
            }
            Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encode_escapes_promql() {
        assert_eq!(
            url_encode(r#"up{job="oceanflow"}"#),
            "up%7Bjob%3D%22oceanflow%22%7D"
        );
    }

    #[test]
    fn wait_until_times_out_and_succeeds() {
        assert_eq!(wait_until(Duration::from_millis(120), || None::<()>), None);
        let mut n = 0;
        assert_eq!(
            wait_until(Duration::from_secs(5), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
    }

    #[test]
    fn http_get_roundtrip_against_a_loopback_server() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for body in ["hello", "chunked"] {
                let (mut s, _) = listener.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                if body == "hello" {
                    write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap();
                } else {
                    write!(
                        s,
                        "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n\
                         3\r\nchu\r\n4\r\nnked\r\n0\r\n\r\n"
                    )
                    .unwrap();
                }
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        assert_eq!(http_get(&format!("{base}/a")).unwrap(), "hello");
        let resp = http_get_response(&format!("{base}/b")).unwrap();
        assert_eq!(resp.status, 404);
        assert_eq!(resp.body, "chunked");
        server.join().unwrap();
    }
}
