//! Where things are in a TOML config: every key of the document with its dotted path
//! (`sources[0].stations`) and byte spans, so that each problem is reported at its key, and
//! parsing that goes on after a problem to report every one of them at once.
//!
//! serde stops at the first error, and inside `[[sources]]` (a `kind`-tagged enum) it only
//! knows the whole table. So: on an error, find its key (for a whole source table, parse that
//! table alone as its kind's struct, in place, to learn the key), record it, blank the
//! key-value out of the text (spaces; offsets stay valid) and parse again.

use std::ops::Range;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml_edit::{ImDocument, Item, Table, Value};

use crate::source::{
    FileSourceConfig, KafkaSourceConfig, OdpSourceConfig, SyntheticSourceConfig, VesselSourceConfig,
};
use crate::validate::ConfigError;
use crate::Config;

/// Errors after which parsing stops (each costs a parse of the whole text).
const MAX_PARSE_ERRORS: usize = 32;

/// A key (or table, or array element) of the document.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Dotted path, e.g. `sources[1].mapping.time`, `variables[0]`.
    pub path: String,
    /// The key as written (a table's header; an array element's value).
    pub key: Range<usize>,
    /// The value (a table's header).
    pub value: Range<usize>,
    /// What to blank to take the entry out of the document: the whole `key = value`.
    blank: Range<usize>,
    /// A table: it cannot be blanked (its keys would join the table before it).
    is_table: bool,
}

/// Every key of the document, tables and array elements included, in document order.
pub(crate) fn entries(doc: &ImDocument<String>) -> Vec<Entry> {
    let mut out = Vec::new();
    collect_table(doc.as_table(), "", &mut out);
    // A table's span is the whole table: its key is the header line.
    let text = doc.raw();
    for entry in out.iter_mut().filter(|e| e.is_table) {
        let line_end = text[entry.key.start..]
            .find('\n')
            .map_or(entry.key.end, |n| entry.key.start + n);
        entry.key.end = line_end.min(entry.key.end);
    }
    out.sort_by_key(|e| e.key.start);
    out
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn collect_table(table: &Table, prefix: &str, out: &mut Vec<Entry>) {
    for (name, item) in table.iter() {
        let path = join(prefix, name);
        let key = table.key(name).and_then(|k| k.span()).unwrap_or_default();
        collect_item(item, path, key, out);
    }
}

impl Entry {
    /// A table's header: its span stands for key, value and what to blank.
    fn table(path: String, header: Range<usize>) -> Entry {
        Entry {
            path,
            key: header.clone(),
            value: header.clone(),
            blank: header,
            is_table: true,
        }
    }
}

fn collect_item(item: &Item, path: String, key: Range<usize>, out: &mut Vec<Entry>) {
    match item {
        Item::Value(value) => collect_value(value, path, key, out),
        Item::Table(table) => {
            let header = table.span().unwrap_or_default();
            if !header.is_empty() {
                out.push(Entry::table(path.clone(), header));
            }
            collect_table(table, &path, out);
        }
        Item::ArrayOfTables(tables) => {
            for (i, table) in tables.iter().enumerate() {
                let path = format!("{path}[{i}]");
                out.push(Entry::table(path.clone(), table.span().unwrap_or_default()));
                collect_table(table, &path, out);
            }
        }
        Item::None => {}
    }
}

fn collect_value(value: &Value, path: String, key: Range<usize>, out: &mut Vec<Entry>) {
    let span = value.span().unwrap_or_default();
    let blank = key.start.min(span.start)..span.end.max(key.end);
    out.push(Entry {
        path: path.clone(),
        key,
        value: span,
        blank: blank.clone(),
        is_table: false,
    });
    match value {
        Value::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                let span = element.span().unwrap_or_default();
                out.push(Entry {
                    path: format!("{path}[{i}]"),
                    key: span.clone(),
                    value: span,
                    // An element goes with its whole array.
                    blank: blank.clone(),
                    is_table: false,
                });
            }
        }
        Value::InlineTable(table) => {
            for (name, v) in table.iter() {
                let key = table.key(name).and_then(|k| k.span()).unwrap_or_default();
                let mut inner = Vec::new();
                collect_value(v, join(&path, name), key, &mut inner);
                // A key of an inline table goes with the whole table.
                out.extend(inner.into_iter().map(|e| Entry {
                    blank: blank.clone(),
                    ..e
                }));
            }
        }
        _ => {}
    }
}

/// The innermost key-value whose key or value holds `offset`.
fn entry_at(entries: &[Entry], offset: usize) -> Option<&Entry> {
    entries
        .iter()
        .filter(|e| e.key.contains(&offset) || e.value.contains(&offset))
        .min_by_key(|e| e.value.len() + e.key.len())
}

/// The entry of `path`, or of the nearest enclosing path that exists.
pub(crate) fn entry_of<'a>(entries: &'a [Entry], path: &str) -> Option<&'a Entry> {
    let mut path = path;
    loop {
        if let Some(e) = entries.iter().find(|e| e.path == path) {
            return Some(e);
        }
        let cut = path.rfind(['.', '['])?;
        path = &path[..cut];
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

fn error_at(text: &str, key: String, offset: usize, expected: String) -> ConfigError {
    let (line, column) = line_column(text, offset);
    ConfigError {
        key,
        line: Some(line),
        column: Some(column),
        expected,
    }
}

/// The outcome of [`parse_all`].
pub(crate) struct Parsed {
    /// Every parse problem, at its key.
    pub errors: Vec<ConfigError>,
    /// The configuration without the keys that had problems (when the rest parses), to check
    /// what remains; with the paths that were left out.
    pub rest: Option<(Config, Vec<String>)>,
}

/// Parses `text`, reporting every problem at its key.
pub(crate) fn parse_all(text: &str) -> Parsed {
    let doc = match text.parse::<ImDocument<String>>() {
        Ok(doc) => doc,
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            let message = e.message().trim().lines().collect::<Vec<_>>().join("; ");
            return Parsed {
                errors: vec![error_at(text, "(syntax)".into(), offset, message)],
                rest: None,
            };
        }
    };
    let entries = entries(&doc);
    let mut work = text.to_string();
    let mut errors = Vec::new();
    let mut left_out = Vec::new();
    while errors.len() < MAX_PARSE_ERRORS {
        let e = match toml::from_str::<Config>(&work) {
            Ok(config) => {
                return Parsed {
                    errors,
                    rest: Some((config, left_out)),
                }
            }
            Err(e) => e,
        };
        let span = e.span().unwrap_or_default();
        // An error spanning `[[sources]]` tables: parse each alone to find the key.
        let inner = source_tables_in(&doc, &entries, &span)
            .find_map(|(index, table)| source_error(&doc, &work, index, &table));
        let (error, entry) = locate(text, &entries, inner.as_ref().unwrap_or(&e));
        let Some(entry) = entry else {
            errors.push(error);
            break; // nowhere known: the rest cannot be parsed past it
        };
        if errors.contains(&error) {
            break; // no progress
        }
        // A field missing because its problem was reported and it was taken out.
        let consequence = left_out.iter().any(|path: &String| {
            path.strip_prefix(&entry.path).is_some_and(|field| {
                error.expected == format!("missing field `{}`", field.trim_start_matches('.'))
            })
        });
        if !consequence {
            errors.push(error);
        }
        // Take the key-value (or the whole table) out and look for the next problem.
        let range = if entry.is_table {
            table_range(&entries, entry, work.len())
        } else {
            entry.blank.clone()
        };
        blank(&mut work, &range);
        left_out.push(entry.path.clone());
    }
    Parsed { errors, rest: None }
}

/// The error at its key: the innermost entry holding the error's span.
fn locate<'a>(
    text: &str,
    entries: &'a [Entry],
    e: &toml::de::Error,
) -> (ConfigError, Option<&'a Entry>) {
    let offset = e.span().map_or(0, |s| s.start);
    let message = e.message().trim().to_string();
    match entry_at(entries, offset) {
        Some(entry) => {
            // Say what was found when the message does not.
            let found = text[entry.value.clone()].trim();
            let message = if entry.is_table
                || message.contains(found.trim_matches('"'))
                || message.starts_with("unknown field")
            {
                message
            } else {
                format!("{message}; found {found}")
            };
            (
                error_at(text, entry.path.clone(), entry.key.start, message),
                Some(entry),
            )
        }
        None => (error_at(text, "(document)".into(), offset, message), None),
    }
}

/// The `[[sources]]` tables whose header is in `span`: index and byte range (header to the
/// next table that is not one of its own).
fn source_tables_in<'a>(
    doc: &ImDocument<String>,
    entries: &'a [Entry],
    span: &'a Range<usize>,
) -> impl Iterator<Item = (usize, Range<usize>)> + 'a {
    let count = doc
        .get("sources")
        .and_then(Item::as_array_of_tables)
        .map_or(0, |t| t.len());
    (0..count).filter_map(move |i| {
        let path = format!("sources[{i}]");
        let header = entries.iter().find(|e| e.path == path)?;
        if !span.contains(&header.key.start) {
            return None;
        }
        Some((
            i,
            table_range(entries, header, span.end.max(header.value.end)),
        ))
    })
}

/// A table with its sub-tables: from its header to the next table that is not its own (or
/// `end`).
fn table_range(entries: &[Entry], table: &Entry, end: usize) -> Range<usize> {
    let own = format!("{}.", table.path);
    let end = entries
        .iter()
        .filter(|e| e.is_table && e.key.start > table.key.start && !e.path.starts_with(&own))
        .map(|e| e.key.start)
        .min()
        .unwrap_or(end);
    table.key.start..end
}

/// One source table, parsed alone in place as the struct of its `kind`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OneSource<T> {
    #[allow(dead_code, reason = "only the errors of parsing it are used")]
    sources: T,
}

/// Parses `sources[index]` alone as its kind's struct, everything else blanked (offsets
/// unchanged), and returns its error.
fn source_error(
    doc: &ImDocument<String>,
    work: &str,
    index: usize,
    table: &Range<usize>,
) -> Option<toml::de::Error> {
    let source = doc.get("sources")?.as_array_of_tables()?.get(index)?;
    let kind = source.get("kind")?.as_str()?;
    let kind_span = {
        let key = source.key("kind")?.span()?;
        let value = source.get("kind")?.span()?;
        key.start..value.end
    };
    let header = source.span()?;
    let header = header.start
        ..work[header.clone()]
            .find('\n')
            .map_or(header.end, |n| header.start + n);
    let mut probe = work.to_string();
    blank(&mut probe, &(0..table.start));
    blank(&mut probe, &(table.end..work.len()));
    blank(&mut probe, &kind_span);
    let table_header = format!("{:width$}", "[sources]", width = header.len());
    probe.replace_range(header, &table_header);
    fn probe_as<T: DeserializeOwned>(text: &str) -> Option<toml::de::Error> {
        toml::from_str::<OneSource<T>>(text).err()
    }
    match kind {
        "file" => probe_as::<FileSourceConfig>(&probe),
        "synthetic" => probe_as::<SyntheticSourceConfig>(&probe),
        "kafka" => probe_as::<KafkaSourceConfig>(&probe),
        "vessel" => probe_as::<VesselSourceConfig>(&probe),
        "odp" => probe_as::<OdpSourceConfig>(&probe),
        _ => None,
    }
}

/// Replaces `range` of `text` by spaces, keeping line breaks (offsets stay valid).
fn blank(text: &mut String, range: &Range<usize>) {
    let blanked: String = text[range.clone()]
        .chars()
        .map(|c| match c {
            '\n' => "\n".to_string(),
            c => " ".repeat(c.len_utf8()),
        })
        .collect();
    text.replace_range(range.clone(), &blanked);
}
