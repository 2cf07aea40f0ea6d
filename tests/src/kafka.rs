//! A real Kafka-protocol broker (tansu) for the Kafka tests, and the independent Python client
//! (`tests/python/kafka_client.py`, confluent-kafka) that creates topics, produces and consumes.
//!
//! The broker binary is `$OCEANFLOW_KAFKA_BROKER` (scripts/test.sh exports it) or whatever
//! `scripts/kafka-broker.sh path` prints. It listens on a free 127.0.0.1 port with in-memory
//! storage; every wait is bounded.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::{free_port, python, wait_until, workspace_root, ChildGuard};

/// How long a broker may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The tansu binary: `$OCEANFLOW_KAFKA_BROKER`, else the path the broker script reports.
pub fn broker_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("OCEANFLOW_KAFKA_BROKER").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let script = workspace_root().join("scripts/kafka-broker.sh");
    let out = Command::new(&script)
        .arg("path")
        .output()
        .with_context(|| format!("running {} path", script.display()))?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !path.is_file() {
        bail!(
            "the Kafka broker (tansu) is not installed at {}: run scripts/kafka-broker.sh install",
            path.display()
        );
    }
    Ok(path)
}

/// A running broker; stopped (killed and reaped) when dropped.
#[derive(Debug)]
pub struct Broker {
    port: u16,
    child: Option<ChildGuard>,
    log: PathBuf,
}

impl Broker {
    /// Starts a broker on a free port and waits (bounded) until it accepts connections.
    pub fn start() -> Result<Broker> {
        let port = free_port();
        Broker::start_advertising(port, port)
    }

    /// Starts a broker on `port` (e.g. the port of a broker that was stopped, to restart it).
    pub fn start_on(port: u16) -> Result<Broker> {
        Broker::start_advertising(port, port)
    }

    /// Starts a broker listening on `port` that tells clients to connect to `advertised` (a
    /// [`Proxy`] in front of it).
    pub fn start_advertising(port: u16, advertised: u16) -> Result<Broker> {
        let binary = broker_binary()?;
        let log = std::env::temp_dir().join(format!("oceanflow-tansu-{port}.log"));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised_url = format!("tcp://127.0.0.1:{advertised}");
        let mut child = ChildGuard::spawn(
            format!("tansu on {port}"),
            Command::new(&binary)
                .arg("broker")
                .args(["--listener-url", &url])
                .args(["--advertised-listener-url", &advertised_url])
                .args(["--storage-engine", "memory://tansu/"])
                .stdout(Stdio::null())
                .stderr(log_file),
        )?;
        let accepted = wait_until(START_TIMEOUT, || {
            if child.check_running().is_err() {
                return Some(false);
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| true)
        });
        if accepted != Some(true) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("tansu did not accept on 127.0.0.1:{port}; log:\n{text}");
        }
        Ok(Broker {
            port: advertised,
            child: Some(child),
            log,
        })
    }

    /// `127.0.0.1:PORT` (the advertised port), for `brokers` settings.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The advertised port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Kills the broker (its in-memory topics are gone) and waits until the port is closed.
    pub fn kill(&mut self) -> Result<()> {
        drop(self.child.take());
        let port = self.port;
        wait_until(START_TIMEOUT, || {
            TcpStream::connect(("127.0.0.1", port))
                .is_err()
                .then_some(())
        })
        .ok_or_else(|| anyhow!("port {port} still accepts after killing tansu"))
    }

    /// Runs `tests/python/kafka_client.py COMMAND --brokers THIS ARGS…` and parses its JSON.
    pub fn client(&self, command: &str, args: &[&str]) -> Result<Value> {
        python_client(command, &self.address(), args)
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        self.client(
            "create",
            &["--topic", topic, "--partitions", &partitions.to_string()],
        )
        .map(|_| ())
    }
}

/// A loopback TCP proxy in front of a broker that can cut every connection and refuse new
/// ones for a while: what a broker restart or a network outage looks like to a client, without
/// losing the broker's (in-memory) log.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on a free port and forwards every connection to `127.0.0.1:backend`.
    pub fn start(backend: u16) -> Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let down = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, o, s) = (Arc::clone(&down), Arc::clone(&open), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                if d.load(Ordering::Relaxed) {
                    drop(client);
                    continue;
                }
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
                    continue;
                };
                let pipes = [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ];
                if let Ok(mut conns) = o.lock() {
                    conns.extend([client, server]);
                }
                for pipe in pipes {
                    if let (Ok(mut from), Ok(mut to)) = pipe {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(Shutdown::Both);
                            let _ = from.shutdown(Shutdown::Both);
                        });
                    }
                }
            }
        });
        Ok(Proxy {
            port,
            down,
            open,
            stop,
        })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts every open connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.down.store(true, Ordering::Relaxed);
        if let Ok(mut conns) = self.open.lock() {
            for c in conns.drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.down.store(false, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

/// Runs the Python Kafka client with a 300 s bound; fails with its stderr on error. Output
/// goes through files, so a large answer cannot fill a pipe and stall the client.
pub fn python_client(command: &str, brokers: &str, args: &[&str]) -> Result<Value> {
    let script = workspace_root().join("tests/python/kafka_client.py");
    let dir = tempfile::tempdir()?;
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(python()?)
        .arg(&script)
        .arg(command)
        .args(["--brokers", brokers])
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("running {}", script.display()))?;
    let status = wait_until(Duration::from_secs(300), || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("kafka_client.py {command} {args:?} did not finish within 300 s");
    };
    let stdout = std::fs::read(&out_path)?;
    if !status.success() {
        bail!(
            "kafka_client.py {command} {args:?} failed ({status}): {}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
    }
    serde_json::from_slice(&stdout).with_context(|| {
        format!(
            "kafka_client.py {command}: not JSON: {}",
            String::from_utf8_lossy(&stdout)
        )
    })
}
