//! Unit tests of parsing and validation.

use super::*;

#[test]
fn embedded_default_is_valid() {
    let valid = ValidConfig::embedded_default();
    assert_eq!(valid.regions().len(), 3);
    assert_eq!(valid.config().sources.len(), 1);
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = "variables = [\"t\"]\n\n[pipeline]\nworkerz = 2\n";
    let errors = ValidConfig::from_toml(text).unwrap_err();
    let e = &errors.0[0];
    assert_eq!(e.key, "pipeline.workerz", "{errors}");
    assert_eq!(e.line, Some(4), "{errors}");
    assert!(e.expected.contains("workerz"), "{errors}");
}

#[test]
fn wrong_type_names_line_and_expectation() {
    let text = "[pipeline]\nworkers = \"two\"\n";
    let errors = ValidConfig::from_toml(text).unwrap_err();
    assert_eq!(errors.0[0].key, "pipeline.workers", "{errors}");
    assert_eq!(errors.0[0].line, Some(2), "{errors}");
    assert!(errors.to_string().contains("usize") || errors.to_string().contains("integer"));
}

#[test]
fn semantic_errors_are_all_reported_with_lines() {
    let text = r#"
variables = ["temperature_c", "temperature_c"]

[[sources]]
kind = "synthetic"
name = "a"
stations = 0

[[sources]]
kind = "file"
name = "a"
path = "x.csv"

[[regions]]
name = "r"
wkt = "POINT(1 2)"

[aggregates.temporal.retention]
hour = "2h"
minute = "1h"
"#;
    // `minute` is not a bucket width: a parse error comes first.
    let errors = ValidConfig::from_toml(text).unwrap_err();
    assert!(errors.to_string().contains("minute"), "{errors}");

    let text = text.replace("minute = \"1h\"\n", "");
    let text = text.replace("hour = \"2h\"", "hour = \"2h\"\n[aggregates.temporal]\n");
    let errors =
        ValidConfig::from_toml(&text.replace("\n[aggregates.temporal]\n", "")).unwrap_err();
    let keys: Vec<_> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"variables[1]"), "{errors}");
    assert!(keys.contains(&"sources[0].stations"), "{errors}");
    assert!(keys.contains(&"sources[1].name"), "{errors}");
    assert!(keys.contains(&"regions[0].wkt"), "{errors}");
    let stations = errors
        .0
        .iter()
        .find(|e| e.key == "sources[0].stations")
        .unwrap();
    assert_eq!(stations.line, Some(7), "{errors}");
    let wkt = errors.0.iter().find(|e| e.key == "regions[0].wkt").unwrap();
    assert_eq!(wkt.line, Some(16), "{errors}");
}

#[test]
fn on_damaged_takes_refuse_or_start_fresh_and_names_key_and_line_otherwise() {
    let text = |value: &str| {
        format!(
            "[pipeline.checkpoint]\ndir = \"ck\"\non_damaged = \"{value}\"\n\n[[sources]]\n\
             kind = \"file\"\nname = \"f\"\npath = \"x.csv\"\n"
        )
    };
    for (value, expected) in [
        ("refuse", OnDamaged::Refuse),
        ("start_fresh", OnDamaged::StartFresh),
    ] {
        let valid = ValidConfig::from_toml(&text(value)).unwrap();
        let checkpoint = valid.config().pipeline.checkpoint.as_ref().unwrap();
        assert_eq!(checkpoint.on_damaged, expected);
    }
    let errors = ValidConfig::from_toml(&text("fresh")).unwrap_err();
    let e = &errors.0[0];
    assert_eq!(e.key, "pipeline.checkpoint.on_damaged", "{errors}");
    assert_eq!(e.line, Some(3), "{errors}");
    assert!(e.expected.contains("\"fresh\""), "{errors}");
    let default = ValidConfig::from_toml(&text("refuse").replace("on_damaged = \"refuse\"\n", ""));
    let checkpoint = default.unwrap().into_config().pipeline.checkpoint.unwrap();
    assert_eq!(checkpoint.on_damaged, OnDamaged::Refuse);
}

#[test]
fn distinct_fields_default_to_all_categoricals() {
    let text = r#"
categorical = ["species", "gear"]
[[sources]]
kind = "file"
name = "f"
path = "x.csv"
"#;
    let valid = ValidConfig::from_toml(text).unwrap();
    assert_eq!(valid.distinct_fields(), ["species", "gear"]);
    let bad = format!("{text}\n[aggregates.regional]\ndistinct = [\"colour\"]\n");
    let errors = ValidConfig::from_toml(&bad).unwrap_err();
    assert_eq!(errors.0[0].key, "aggregates.regional.distinct[0]");
}
