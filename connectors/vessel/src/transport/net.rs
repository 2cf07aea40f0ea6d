//! UDP listener, TCP server and TCP client threads.
//!
//! Sockets are bound in the opener (so a port in use fails the partition at once, with the
//! address in the error) and read on background threads with short read timeouts, so they
//! notice within [`POLL`] that the reader is gone.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use oceanflow_connectors::SourceError;

use crate::transport::live::{Feed, LineBuffer};

/// How often blocked threads look at the stop flag.
pub const POLL: Duration = Duration::from_millis(200);

/// Delay before reconnecting a dropped TCP client.
const RECONNECT: Duration = Duration::from_secs(1);

/// Receive buffer asked for on UDP sockets: ~20k datagrams of NMEA, so a burst at 50,000
/// datagrams a second survives a short stall of the reading thread.
const UDP_RECV_BUFFER: usize = 16 * 1024 * 1024;

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> SourceError {
    move |source| SourceError::Io { path: what, source }
}

fn parse_addr(addr: &str) -> Result<SocketAddr, SourceError> {
    addr.parse().map_err(|e| SourceError::Other {
        context: format!("address {addr:?}"),
        message: format!("expected IP:port: {e}"),
    })
}

fn spawn(name: String, body: impl FnOnce() + Send + 'static) -> Result<(), SourceError> {
    thread::Builder::new()
        .name(name.clone())
        .spawn(body)
        .map(|_| ())
        .map_err(io_error(name))
}

/// Binds a UDP socket on `bind` and starts its receiving thread. Each datagram is one chunk.
pub fn udp(bind: &str, device_id: &str, feed: Feed) -> Result<SocketAddr, SourceError> {
    let what = format!("udp {bind} (device {device_id})");
    let socket = UdpSocket::bind(parse_addr(bind)?).map_err(io_error(what.clone()))?;
    socket.set_broadcast(true).map_err(io_error(what.clone()))?;
    socket
        .set_read_timeout(Some(POLL))
        .map_err(io_error(what.clone()))?;
    // Best effort: the forced size needs CAP_NET_ADMIN, the plain one is capped by rmem_max.
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(&socket, UDP_RECV_BUFFER).is_err() {
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, UDP_RECV_BUFFER);
    }
    let local = socket.local_addr().map_err(io_error(what.clone()))?;
    tracing::info!(device = device_id, %local, "listening for UDP datagrams");
    spawn(format!("vessel-udp-{device_id}"), move || {
        let mut buf = vec![0u8; 65_536];
        while !feed.stopped() {
            match socket.recv_from(&mut buf) {
                Ok((n, _)) => {
                    if !feed.send(buf[..n].to_vec()) {
                        return;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => tracing::warn!(%what, error = %e, "UDP receive failed"),
            }
        }
    })?;
    Ok(local)
}

/// Reads one TCP stream until it ends or the reader is gone; false when the reader is gone.
fn read_stream(mut stream: TcpStream, feed: &Feed, what: &str) -> bool {
    if let Err(e) = stream.set_read_timeout(Some(POLL)) {
        tracing::warn!(what, error = %e, "cannot set a read timeout");
        return true;
    }
    let mut lines = LineBuffer::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if feed.stopped() {
            return false;
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                return lines.take_rest().is_none_or(|rest| feed.send(rest));
            }
            Ok(n) => {
                if let Some(complete) = lines.push(&buf[..n]) {
                    if !feed.send(complete) {
                        return false;
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(what, error = %e, "TCP read failed");
                return lines.take_rest().is_none_or(|rest| feed.send(rest));
            }
        }
    }
}

/// Listens on `bind`; every accepted connection is read on its own thread.
pub fn tcp_server(bind: &str, device_id: &str, feed: Feed) -> Result<SocketAddr, SourceError> {
    let what = format!("tcp server {bind} (device {device_id})");
    let listener = TcpListener::bind(parse_addr(bind)?).map_err(io_error(what.clone()))?;
    // Non-blocking accept so the thread can see the stop flag; it waits POLL between tries.
    listener
        .set_nonblocking(true)
        .map_err(io_error(what.clone()))?;
    let local = listener.local_addr().map_err(io_error(what.clone()))?;
    tracing::info!(device = device_id, %local, "accepting TCP senders");
    let device_id = device_id.to_string();
    spawn(format!("vessel-tcp-{device_id}"), move || {
        while !feed.stopped() {
            match listener.accept() {
                Ok((stream, peer)) => {
                    tracing::info!(%what, %peer, "sender connected");
                    let feed = feed.clone();
                    let what = format!("{what} from {peer}");
                    let started = stream
                        .set_nonblocking(false)
                        .map_err(io_error(what.clone()))
                        .and_then(|()| {
                            spawn(format!("vessel-tcp-{device_id}-conn"), move || {
                                read_stream(stream, &feed, &what);
                            })
                        });
                    if let Err(e) = started {
                        tracing::warn!(error = %e, "cannot read a TCP connection");
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(POLL / 4),
                Err(e) => {
                    tracing::warn!(%what, error = %e, "accept failed");
                    thread::sleep(POLL);
                }
            }
        }
    })?;
    Ok(local)
}

/// Connects to `connect` and reads it, reconnecting after [`RECONNECT`] when it drops.
pub fn tcp_client(connect: &str, device_id: &str, feed: Feed) -> Result<(), SourceError> {
    let addr = parse_addr(connect)?;
    let what = format!("tcp client {connect} (device {device_id})");
    spawn(format!("vessel-tcpc-{device_id}"), move || {
        while !feed.stopped() {
            match TcpStream::connect_timeout(&addr, RECONNECT) {
                Ok(stream) => {
                    tracing::info!(%what, "connected");
                    if !read_stream(stream, &feed, &what) {
                        return;
                    }
                    tracing::warn!(%what, "connection closed; reconnecting");
                }
                Err(e) => tracing::warn!(%what, error = %e, "connect failed; retrying"),
            }
            thread::sleep(RECONNECT);
        }
    })
}
