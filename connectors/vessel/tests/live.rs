//! Live transports of the vessel connector on loopback: UDP datagrams with several sentences,
//! TCP server and client, a serial port through a `socat` pseudo-terminal pair, timestamped
//! lines, and paced replay.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use oceanflow_connectors::{Poll, RejectReason};

const TIMEOUT: Duration = Duration::from_secs(20);

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn live(name: &str, devices: &str) -> oceanflow_config::VesselSourceConfig {
    config(&format!(
        "name = \"{name}\"\nposition_device = \"gps\"\n{devices}"
    ))
}

#[test]
fn udp_datagrams_with_several_sentences_and_instrument_lines() {
    let (gps, tsg) = (free_udp_port(), free_udp_port());
    let cfg = live(
        "udp",
        &format!(
            r#"
[[devices]]
id = "gps"
transport = {{ kind = "udp", bind = "127.0.0.1:{gps}" }}
variables = {{ heading_deg = "HDT.heading_deg" }}

[[devices]]
id = "tsg"
format = "instrument"
transport = {{ kind = "udp", bind = "127.0.0.1:{tsg}" }}
fields = ["sea_temperature_c", "", "salinity_psu"]
"#
        ),
    );
    let ctx = context();
    let mut reader = open(&cfg, &ctx, None);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    // A fix first, then a burst datagram (GGA + HDT + a bad checksum), then TSG lines.
    sender
        .send_to(
            b"$INGGA,000000.16,2200.110899,S,01756.359432,W,1,12,0.7,-2.76,M,4.67,M,,*6C\r\n$INHDT,218.26,T*1A$INHDT,218.26,T*1B\r\n",
            ("127.0.0.1", gps),
        )
        .unwrap();
    let (rows_gps, _) = read_until(reader.as_mut(), TIMEOUT, |rows, rejected| {
        !rows.is_empty() && !rejected.is_empty()
    });
    sender
        .send_to(
            b"21.8054,  5.17647,  36.5878\n21.9, 5.2, 36.6\n",
            ("127.0.0.1", tsg),
        )
        .unwrap();
    let (rows_tsg, rejected) = read_until(reader.as_mut(), TIMEOUT, |rows, _| rows.len() == 2);
    assert!(rejected.is_empty());
    assert_eq!(rows_gps.len(), 1, "one HDT row");
    assert_eq!(rows_gps[0].var("heading_deg"), Some(218.26));
    assert!(rows_gps[0].lat.is_some(), "HDT joined to the GGA fix");
    assert_eq!(rows_tsg[0].var("sea_temperature_c"), Some(21.8054));
    assert_eq!(rows_tsg[1].var("salinity_psu"), Some(36.6));
    assert_eq!(
        rows_tsg[1].var("conductivity_s_m"),
        None,
        "position skipped"
    );
    let lat = rows_gps[0].lat.unwrap();
    assert_eq!(
        rows_tsg[0].lat,
        Some(lat),
        "TSG takes the fix received just before"
    );
    assert_eq!(
        metric(
            &ctx.registry,
            "oceanflow_vessel_checksum_failures_total",
            &[("source", "udp"), ("device", "gps")]
        ),
        1.0
    );
}

#[test]
fn tcp_server_and_client_read_lines_split_across_writes() {
    let server_port = free_tcp_port();
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    let cfg = live(
        "tcp",
        &format!(
            r#"
[[devices]]
id = "gps"
transport = {{ kind = "tcp_server", bind = "127.0.0.1:{server_port}" }}
variables = {{ heading_deg = "HDT.heading_deg" }}

[[devices]]
id = "mb"
transport = {{ kind = "tcp_client", connect = "127.0.0.1:{upstream_port}" }}
variables = {{ depth_m = "DPT.depth_m" }}
"#
        ),
    );
    let ctx = context();
    let mut reader = open(&cfg, &ctx, None);
    let mut to_server = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
    to_server
        .write_all(b"$HEHDT,218.53,T*12\r\n$HEHDT,21")
        .unwrap();
    to_server.flush().unwrap();
    let (mut instrument, _) = upstream.accept().unwrap();
    instrument
        .write_all(b"$KIDPT,4674.70,8.62,12000.0*79\r\n")
        .unwrap();
    to_server.write_all(b"8.51,T*10\r\n").unwrap();
    let (rows, rejected) = read_until(reader.as_mut(), TIMEOUT, |rows, _| rows.len() == 3);
    assert!(rejected.is_empty(), "{rejected:?}");
    let mut headings: Vec<f64> = rows.iter().filter_map(|r| r.var("heading_deg")).collect();
    headings.sort_by(f64::total_cmp);
    assert_eq!(
        headings,
        [218.51, 218.53],
        "a line split across two writes is one line"
    );
    assert_eq!(
        rows.iter()
            .find(|r| r.station == "mb")
            .and_then(|r| r.var("depth_m")),
        Some(4674.70)
    );
    assert!(rows.iter().all(|r| r.lat.is_none()), "no fix: unpositioned");
    assert_eq!(
        metric(
            &ctx.registry,
            "oceanflow_vessel_unpositioned_total",
            &[("source", "tcp"), ("device", "gps")]
        ),
        2.0
    );
}

#[test]
fn timestamped_lines_use_their_own_reception_time() {
    let port = free_udp_port();
    let cfg = live(
        "stamped",
        &format!(
            r#"
[[devices]]
id = "gps"
timestamped = true
transport = {{ kind = "udp", bind = "127.0.0.1:{port}" }}
variables = {{ heading_deg = "HDT.heading_deg" }}
"#
        ),
    );
    let mut reader = open(&cfg, &context(), None);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender
        .send_to(
            b"2014-08-01T00:00:00.183000Z $HEHDT,218.53,T*12\nnot a time $HEHDT,218.53,T*12\n",
            ("127.0.0.1", port),
        )
        .unwrap();
    let (rows, rejected) = read_until(reader.as_mut(), TIMEOUT, |rows, rej| {
        rows.len() + rej.len() == 2
    });
    assert_eq!(rows[0].time_us, 1_406_851_200_183_000);
    assert_eq!(rejected[0].reason, RejectReason::UnparseableTime);
}

/// A `socat` pseudo-terminal pair; killed on drop.
struct PtyPair {
    child: Child,
}

impl PtyPair {
    fn new(dir: &Path) -> PtyPair {
        let (a, b) = (dir.join("a"), dir.join("b"));
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is installed (scripts/test.sh installs it: apt-get install socat)");
        let pair = PtyPair { child };
        let deadline = Instant::now() + TIMEOUT;
        while !(a.exists() && b.exists()) {
            assert!(
                Instant::now() < deadline,
                "socat did not create the pty pair"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        pair
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serial_port_through_a_socat_pty_pair() {
    let dir = tempfile::tempdir().unwrap();
    let _pair = PtyPair::new(dir.path());
    let cfg = live(
        "serial",
        &format!(
            r#"
[[devices]]
id = "gps"
transport = {{ kind = "serial", path = "{}", baud = 4800, parity = "none" }}
variables = {{ speed_knots = "VTG.speed_knots" }}

[[devices]]
id = "rtmp"
format = "instrument"
transport = {{ kind = "udp", bind = "127.0.0.1:{}" }}
fields = ["intake_temperature_c"]
"#,
            dir.path().join("a").display(),
            free_udp_port()
        ),
    );
    let mut reader = open(&cfg, &context(), None);
    let mut port = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("b"))
        .unwrap();
    port.write_all(b"$GPVTG,220.2,T,245.1,M,009.7,N,018.0,K*49\r\n$GPVTG,214.9,T,239.8,M,008.3,N,015.4,K*4B\r\n")
        .unwrap();
    let (rows, rejected) = read_until(reader.as_mut(), TIMEOUT, |rows, _| rows.len() == 2);
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(
        rows.iter()
            .map(|r| r.var("speed_knots"))
            .collect::<Vec<_>>(),
        [Some(9.7), Some(8.3)]
    );
}

#[test]
fn paced_replay_follows_reception_time() {
    let path = data_dir().join("NBP1406_gyr1-2014-08-01");
    // 5,000 lines over 1,000 s of reception time at 20,000 × real time: about 50 ms.
    let cfg = config(&format!(
        r#"
name = "paced"
replay_speed = 20000
batch_rows = 100000

[[devices]]
id = "gyr1"
transport = {{ kind = "replay", path = "{}" }}
variables = {{ heading_deg = "HDT.heading_deg" }}
"#,
        path.display()
    ));
    let mut reader = open(&cfg, &context(), None);
    let start = Instant::now();
    let (mut rows, mut idle, mut batches) = (0, 0, 0);
    loop {
        match reader.poll().unwrap() {
            Poll::Batch(b) => {
                rows += b.batch.num_rows();
                batches += 1;
            }
            Poll::Idle => {
                idle += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Poll::Finished => break,
        }
        assert!(start.elapsed() < TIMEOUT, "paced replay did not finish");
    }
    assert_eq!(rows, 5000);
    assert!(
        start.elapsed() >= Duration::from_millis(45),
        "{:?}",
        start.elapsed()
    );
    // Paced: lines are handed over as they fall due, not in full batches.
    assert!(batches > 10, "paced: {batches} batches, {idle} idle polls");
}
