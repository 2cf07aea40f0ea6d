use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::Array;

use super::*;

fn config() -> VesselSourceConfig {
    toml::from_str(
        r#"
name = "ship"
position_device = "gps"
[[devices]]
id = "gps"
transport = { kind = "replay", path = "unused" }
variables = { speed_knots = "RMC.speed_knots" }
[[devices]]
id = "tsg"
format = "instrument"
transport = { kind = "replay", path = "unused" }
fields = ["sea_temperature_c"]
[[devices]]
id = "sounder"
transport = { kind = "replay", path = "unused" }
variables = { depth_m = "DPT.depth_m" }
"#,
    )
    .expect("config")
}

/// Lines of three devices interleaved, a bad one among them: each row's lane is its device,
/// and an instrument row before the first fix keeps no position (it is not rejected).
#[test]
fn every_row_carries_its_device_as_lane() {
    let variables = ["speed_knots", "sea_temperature_c", "depth_m"].map(String::from);
    let mut engine = Engine::new(&config(), "ship", &variables, &[]).expect("engine");
    let second = 1_000_000;
    let t0 = 1_404_172_800 * second; // 2014-07-01T00:00:00Z
    let lines: [(usize, i64, &str); 6] = [
        (1, t0, "12.5"),
        (2, t0 + second, "$SDDPT,40.0,0.0"),
        (
            0,
            t0 + 2 * second,
            "$GPRMC,000002,A,6000.000,N,00500.000,E,8.0,90.0,010714,,",
        ),
        (1, t0 + 3 * second, "12.6"),
        (2, t0 + 4 * second, "$SDDPT,not-a-depth,0.0"),
        (2, t0 + 5 * second, "$SDDPT,41.0,0.0"),
    ];
    for (device, reception_us, line) in lines {
        engine.line(device, reception_us, line.as_bytes(), line.as_bytes());
    }
    let out = engine.finish(0, None).expect("batch");
    let lanes = out.lanes.expect("lanes");
    assert_eq!(lanes.of_row.len(), out.batch.num_rows());
    let station = out.batch.column(1).as_any_dictionary();
    let names = station.values().as_string::<i32>();
    let keys = station.normalized_keys();
    let tagged: Vec<(&str, &str)> = (0..out.batch.num_rows())
        .map(|row| (names.value(keys[row]), lanes.of(row).expect("a lane")))
        .collect();
    assert_eq!(
        tagged,
        [
            ("tsg", "tsg"),
            ("sounder", "sounder"),
            ("gps", "gps"),
            ("tsg", "tsg"),
            ("sounder", "sounder")
        ]
    );
    assert_eq!(out.rejected.len(), 1, "{:?}", out.rejected);
    assert_eq!(out.rejected[0].record, "$SDDPT,not-a-depth,0.0");
    let latitude = out.batch.column(2).as_primitive::<Float64Type>();
    assert!(latitude.is_null(0), "before the first fix: unpositioned");
    assert_eq!(latitude.value(3), 60.0, "after the fix: joined");
}
