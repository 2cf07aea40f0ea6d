//! Configs a user copies from: `config/default.toml` and every `config/examples/*.toml`
//! validate, and so does each commented-out TOML block in them once uncommented.

use std::path::PathBuf;

use oceanflow_config::ValidConfig;
use oceanflow_tests::workspace_root;

fn example_configs() -> Vec<PathBuf> {
    let root = workspace_root().join("config");
    let mut paths = vec![root.join("default.toml")];
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            paths.push(path);
        }
    }
    paths.sort();
    paths
}

/// Whether the text after a comment's `# ` is TOML: a table header or a `key = value` line
/// (indented text is an illustration inside prose, not a block to uncomment).
fn looks_like_toml(line: &str) -> bool {
    if line.starts_with(char::is_whitespace) {
        return false;
    }
    let line = line.trim_end();
    let header = line.starts_with('[')
        && line
            .split('#')
            .next()
            .unwrap_or_default()
            .trim_end()
            .ends_with(']');
    let key = line.split_once(" = ").is_some_and(|(key, _)| {
        let key = key.trim();
        !key.is_empty()
            && (key.starts_with('"') && key.ends_with('"')
                || key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
    });
    header || key
}

/// Line ranges of commented-out TOML: runs of consecutive `# ` lines that look like TOML.
fn commented_blocks(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut blocks = Vec::new();
    let mut start = None;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let toml = line.strip_prefix("# ").is_some_and(looks_like_toml);
        match (toml, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                blocks.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        blocks.push(s..lines.len());
    }
    blocks
}

fn uncomment(text: &str, block: &std::ops::Range<usize>) -> String {
    text.lines()
        .enumerate()
        .map(|(i, line)| match line.strip_prefix("# ") {
            Some(rest) if block.contains(&i) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_example_config_and_each_commented_block_validates() {
    let configs = example_configs();
    assert!(configs.len() >= 4, "{configs:?}");
    let mut blocks_checked = 0;
    for path in configs {
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(errors) = ValidConfig::from_toml(&text) {
            panic!("{}: {errors}", path.display());
        }
        for block in commented_blocks(&text) {
            let uncommented = uncomment(&text, &block);
            if let Err(errors) = ValidConfig::from_toml(&uncommented) {
                panic!(
                    "{}: the commented-out block at lines {}-{}, uncommented: {errors}",
                    path.display(),
                    block.start + 1,
                    block.end
                );
            }
            blocks_checked += 1;
        }
    }
    // default.toml: checkpoint, dead letters, limit; kafka: csv_header, client, secrets,
    // changelog; nbp1406: replay_speed; odp: credentials, selection, follow.
    assert!(
        blocks_checked >= 10,
        "only {blocks_checked} commented blocks found"
    );
}

#[test]
fn commented_blocks_are_found_and_prose_is_not() {
    let text =
        "a = 1\n# Prose: say what = means.\n# [t]\n# b = 2 # why\n#   e = 4\n# \"c.d\" = 3\n";
    assert_eq!(commented_blocks(text), [2..4, 5..6]);
    assert_eq!(
        uncomment(text, &(2..4)),
        "a = 1\n# Prose: say what = means.\n[t]\nb = 2 # why\n#   e = 4\n# \"c.d\" = 3"
    );
}

const SYNTHETIC: &str = "[[sources]]\nkind = \"synthetic\"\nname = \"s\"\n";
const FILE: &str = "[[sources]]\nkind = \"file\"\nname = \"f\"\npath = \"x.csv\"\n\n";

/// The whole report `oceanflow validate` prints for `text` (after the file name).
fn report(text: &str) -> String {
    match ValidConfig::from_toml(text) {
        Ok(_) => panic!("valid: {text}"),
        Err(errors) => errors.to_string(),
    }
}

fn one(problem: &str) -> String {
    format!("1 problem(s) in the configuration:\n  - {problem}\n")
}

#[test]
fn each_error_class_names_its_key_line_column_expectation_and_finding() {
    let cases = [
        // Inside [[sources]]: at the key, not the table header.
        (
            format!("{SYNTHETIC}stations = \"fifty\"\n"),
            "line 4, column 1: sources[0].stations: invalid type: string \"fifty\", expected u32",
        ),
        (
            format!("{SYNTHETIC}interval = \"-5s\"\n"),
            "line 4, column 1: sources[0].interval: expected a duration such as \"90s\", \"1h\" \
             or \"30days\", got \"-5s\" (expected number at 0)",
        ),
        (
            format!("{SYNTHETIC}stationz = 5\n"),
            "line 4, column 1: sources[0].stationz: unknown field `stationz`, expected one of \
             `name`, `stations`, `seed`, `start`, `interval`, `rows_per_second`, `limit`, \
             `batch_rows`",
        ),
        (
            "[[sources]]\nkind = \"filez\"\nname = \"f\"\n".to_string(),
            "line 2, column 1: sources[0].kind: unknown variant `filez`, expected one of \
             `file`, `synthetic`, `kafka`, `vessel`, `odp`",
        ),
        // The key, not the value.
        (
            format!("{FILE}[export]\nlisten = \"localhost:x\"\n"),
            "line 7, column 1: export.listen: invalid socket address syntax; found \
             \"localhost:x\"",
        ),
        (
            format!("{FILE}[aggregates.temporal]\nbuckets = [\"hour\", \"minute\"]\n"),
            "line 7, column 20: aggregates.temporal.buckets[1]: unknown variant `minute`, \
             expected one of `hour`, `day`, `month`, `year`",
        ),
        (
            format!("{FILE}[pipeline]\nworkers = 0\n"),
            "line 7, column 1: pipeline.workers: expected 1 to 1024 worker threads, got 0",
        ),
        (
            format!("{FILE}[pipeline\nworkers = 1\n"),
            "line 6, column 10: (syntax): invalid table header; expected `.`, `]`",
        ),
        // WKT: closure, validity, self-intersection (geo's validation).
        (
            format!("{FILE}[[regions]]\nname = \"r\"\nwkt = \"POINT(1 2)\"\n"),
            "line 8, column 1: regions[0].wkt: expected a WKT POLYGON or MULTIPOLYGON (lon lat \
             order): got POINT",
        ),
        (
            format!("{FILE}[[regions]]\nname = \"r\"\nwkt = \"POLYGON((0 0, 10 0, 10 10, 0 10))\"\n"),
            "line 8, column 1: regions[0].wkt: expected a WKT POLYGON or MULTIPOLYGON (lon lat \
             order): the exterior ring is not closed (its last point must repeat its first)",
        ),
        (
            format!(
                "{FILE}[[regions]]\nname = \"r\"\nwkt = \"POLYGON((0 0, 10 10, 10 0, 0 10, 0 0))\"\n"
            ),
            "line 8, column 1: regions[0].wkt: expected a WKT POLYGON or MULTIPOLYGON (lon lat \
             order): invalid geometry: exterior ring has a self-intersection",
        ),
        (
            format!(
                "{FILE}[[regions]]\nname = \"r\"\nwkt = \"MULTIPOLYGON(((0 0, 10 0, 10 10, 0 10, \
                 0 0)), ((5 5, 15 5, 15 15, 5 15, 5 5)))\"\n"
            ),
            "line 8, column 1: regions[0].wkt: expected a WKT POLYGON or MULTIPOLYGON (lon lat \
             order): invalid geometry: polygons at indices 0 and 1 overlap",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(report(&text), one(expected), "for:\n{text}");
    }
}

#[test]
fn every_problem_is_reported_at_once_in_line_order() {
    let text = "variables = [\"temperature_c\", \"temperature_c\"]\n\n[pipeline]\n\
                update_interval = \"fast\"\n\n[[sources]]\nkind = \"synthetic\"\nname = \"s\"\n\
                stations = \"fifty\"\ninterval = \"-5s\"\n\n[[sources]]\nkind = \"filez\"\n\
                name = \"f\"\n\n[export]\nlisten = \"localhost:x\"\n";
    assert_eq!(
        report(text),
        "6 problem(s) in the configuration:\n  \
         - line 1, column 31: variables[1]: \"temperature_c\" is declared twice (names are \
         unique across variables and categorical)\n  \
         - line 4, column 1: pipeline.update_interval: expected a duration such as \"90s\", \
         \"1h\" or \"30days\", got \"fast\" (expected number at 0)\n  \
         - line 9, column 1: sources[0].stations: invalid type: string \"fifty\", expected u32\n  \
         - line 10, column 1: sources[0].interval: expected a duration such as \"90s\", \"1h\" \
         or \"30days\", got \"-5s\" (expected number at 0)\n  \
         - line 13, column 1: sources[1].kind: unknown variant `filez`, expected one of \
         `file`, `synthetic`, `kafka`, `vessel`, `odp`\n  \
         - line 17, column 1: export.listen: invalid socket address syntax; found \
         \"localhost:x\"\n"
    );
}
