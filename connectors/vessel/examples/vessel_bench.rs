//! Throughput of the vessel connector (run by `bench/vessel/run.sh`; not a test).
//!
//! ```text
//! vessel_bench parse  LOG...            NMEA parse only, one core, lines in memory
//! vessel_bench replay LOG...            replay reader: merge, timestamps, parse, join, batches
//! vessel_bench udp    RATE SECONDS      UDP loopback: datagrams/s sent vs lines received
//! ```
//!
//! Prints one JSON object per run on stdout.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use oceanflow_config::source::vessel::ChecksumPolicy;
use oceanflow_config::VesselSourceConfig;
use oceanflow_connectors::{PartitionReader, Poll, SourceContext};
use oceanflow_vessel::nmea;

const VARIABLES: [&str; 4] = ["heading_deg", "speed_knots", "depth_m", "sea_temperature_c"];

fn context() -> SourceContext {
    SourceContext::new(VARIABLES.iter().map(|s| s.to_string()).collect(), vec![])
}

/// A device for a log file, by the instrument its name says it is.
fn device(path: &str, transport: &str) -> String {
    let id = PathBuf::from(path)
        .file_name()
        .map(|f| f.to_string_lossy().replace(['-', '.'], "_"))
        .unwrap_or_default();
    let body = if path.contains("tsg1") {
        "format = \"instrument\"\nfields = [\"sea_temperature_c\"]"
    } else if path.contains("rtmp") {
        "format = \"instrument\"\nfields = [\"\"]"
    } else if path.contains("mbdp") {
        "variables = { depth_m = \"DPT.depth_m\" }"
    } else if path.contains("s330") || path.contains("PCOD") {
        "variables = { speed_knots = \"RMC.speed_knots\", heading_deg = \"HDT.heading_deg\" }"
    } else {
        "variables = { heading_deg = \"HDT.heading_deg\" }"
    };
    format!("[[devices]]\nid = \"{id}\"\ntransport = {transport}\n{body}\n")
}

fn config(text: &str) -> VesselSourceConfig {
    match toml::from_str(text) {
        Ok(c) => c,
        Err(e) => fail(&format!("bench config: {e}")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("vessel_bench: {message}");
    std::process::exit(2)
}

fn open(cfg: &VesselSourceConfig) -> Box<dyn PartitionReader> {
    let ctx = context();
    let mut parts =
        oceanflow_vessel::partitions(cfg, &ctx).unwrap_or_else(|e| fail(&e.to_string()));
    (parts.remove(0).open)(None).unwrap_or_else(|e| fail(&e.to_string()))
}

fn parse(files: &[String]) {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for f in files {
        let text = std::fs::read(f).unwrap_or_else(|e| fail(&format!("{f}: {e}")));
        for line in text.split(|b| *b == b'\n') {
            let payload = line
                .iter()
                .position(|b| *b == b' ')
                .map_or(line, |i| &line[i + 1..]);
            if payload.first() == Some(&b'$') {
                lines.push(payload.to_vec());
            }
        }
    }
    let mut ok = 0u64;
    let mut sum = 0.0;
    let start = Instant::now();
    let mut rounds = 0u64;
    // At least a second of work, so the clock's resolution does not matter.
    while start.elapsed() < Duration::from_secs(1) || rounds == 0 {
        for line in &lines {
            if let Ok(s) = nmea::parse(line, ChecksumPolicy::Verify) {
                ok += 1;
                sum += s.values[0].unwrap_or(0.0);
            }
        }
        rounds += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = lines.len() as u64 * rounds;
    println!(
        "{{\"mode\": \"parse\", \"lines\": {n}, \"parsed\": {ok}, \"seconds\": {secs:.3}, \"lines_per_second\": {:.0}, \"checksum\": {sum:.1}}}",
        n as f64 / secs
    );
}

fn replay(files: &[String]) {
    let devices: String = files
        .iter()
        .map(|f| device(f, &format!("{{ kind = \"replay\", path = \"{f}\" }}")))
        .collect();
    let cfg = config(&format!("name = \"bench\"\nbatch_rows = 65536\n{devices}"));
    let mut reader = open(&cfg);
    let (mut rows, mut bytes, mut rejected) = (0usize, 0u64, 0usize);
    let start = Instant::now();
    loop {
        match reader.poll() {
            Ok(Poll::Batch(b)) => {
                rows += b.batch.num_rows();
                rejected += b.rejected.len();
                bytes += b.bytes;
            }
            Ok(Poll::Finished) => break,
            Ok(Poll::Idle) => {}
            Err(e) => fail(&e.to_string()),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let lines: usize = files
        .iter()
        .map(|f| {
            std::fs::read(f)
                .map(|t| t.iter().filter(|b| **b == b'\n').count())
                .unwrap_or(0)
        })
        .sum();
    println!(
        "{{\"mode\": \"replay\", \"lines\": {lines}, \"rows\": {rows}, \"rejected\": {rejected}, \"bytes\": {bytes}, \"seconds\": {secs:.3}, \"lines_per_second\": {:.0}}}",
        lines as f64 / secs
    );
}

fn udp(rate: f64, seconds: f64) {
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| fail(&e.to_string()));
    let cfg = config(&format!(
        "name = \"bench_udp\"\nbatch_rows = 65536\n{}",
        device(
            "gyr1",
            &format!("{{ kind = \"udp\", bind = \"127.0.0.1:{port}\" }}")
        )
    ));
    let mut reader = open(&cfg);
    let total = (rate * seconds) as u64;
    let sender = std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&e.to_string()));
        let lines = [
            &b"$HEHDT,218.53,T*12\r\n"[..],
            b"$HEHDT,218.51,T*10\r\n",
            b"$HEHDT,218.49,T*19\r\n",
        ];
        let start = Instant::now();
        for i in 0..total {
            // Paced against the schedule (not per-datagram sleeps): bursts catch up.
            let due = Duration::from_secs_f64(i as f64 / rate);
            while start.elapsed() < due {
                std::hint::spin_loop();
            }
            let _ = socket.send_to(lines[(i % 3) as usize], ("127.0.0.1", port));
        }
        start.elapsed().as_secs_f64()
    });
    let (mut rows, mut rejected) = (0u64, 0usize);
    let start = Instant::now();
    let mut idle_since: Option<Instant> = None;
    loop {
        match reader.poll() {
            Ok(Poll::Batch(b)) => {
                rows += b.batch.num_rows() as u64;
                rejected += b.rejected.len();
                idle_since = None;
            }
            Ok(_) => {
                if rows >= total {
                    break;
                }
                let since = *idle_since.get_or_insert_with(Instant::now);
                if sender.is_finished() && since.elapsed() > Duration::from_secs(2) {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => fail(&e.to_string()),
        }
    }
    let send_secs = sender.join().unwrap_or(0.0);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"mode\": \"udp\", \"target_rate\": {rate}, \"sent\": {total}, \"received\": {rows}, \"rejected\": {rejected}, \"lost\": {}, \"send_seconds\": {send_secs:.3}, \"achieved_rate\": {:.0}, \"seconds\": {secs:.3}}}",
        total.saturating_sub(rows),
        total as f64 / send_secs
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("parse") if args.len() > 1 => parse(&args[1..]),
        Some("replay") if args.len() > 1 => replay(&args[1..]),
        Some("udp") if args.len() == 3 => {
            let rate: f64 = args[1].parse().unwrap_or_else(|_| fail("RATE is a number"));
            let secs: f64 = args[2]
                .parse()
                .unwrap_or_else(|_| fail("SECONDS is a number"));
            udp(rate, secs)
        }
        _ => fail("usage: vessel_bench parse LOG... | replay LOG... | udp RATE SECONDS"),
    }
}
