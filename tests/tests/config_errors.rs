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
