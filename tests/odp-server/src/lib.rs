//! A local Ocean Data Platform tabular v2 server, for tests and benchmarks.
//!
//! It speaks the protocol the `odp-sdk` Python client (0.28.10) speaks — proven by running that
//! client against it (`tests/tests/odp_sdk.rs`):
//! - `POST /api/table/v2/stats?table_id=ID` → JSON `{num_rows, size, columns: [...]}`;
//! - `POST /api/table/v2/sdk/select?table_id=ID&tx_id=` with a JSON body
//!   `{query, cols, vars, cursor, timeout, aggr, by}` → an Arrow IPC stream. The query
//!   `"fetch" == "schema"` answers one zero-row batch (the schema probe). Pages hold
//!   `page_rows` rows in batches of `batch_rows`; the continuation cursor travels in the
//!   custom metadata of a record-batch message and/or in a JSON trailer after the
//!   end-of-stream marker ([`CursorCarrier`]);
//! - `Authorization: ApiKey <key>` (or `Bearer <key>`) is required (401 otherwise); an unknown
//!   table id answers 204, a bad filter or cursor 400 with the reason as text;
//! - fault injection ([`Fault`]) for the next data-page requests: 429 with `Retry-After`, 503,
//!   a connection cut after some batches, an in-stream `error` metadata key. Faults are queued
//!   with [`OdpServer::inject`] or `POST /admin/faults` (a JSON array of faults).
//!
//! HTTP/1.1 is served by hand over `std::net` (one thread per connection, `Connection: close`)
//! so a fault can cut a response at an exact byte.

pub mod biota;
pub mod filter;
pub mod ipc;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use arrow_array::{Array, RecordBatch};
use arrow_schema::{ArrowError, DataType};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use crate::filter::Filter;
use crate::ipc::IpcStream;

/// The schema probe's query text, exactly as the SDKs send it.
pub const SCHEMA_PROBE: &str = "\"fetch\" == \"schema\"";

/// Where a page's continuation cursor is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorCarrier {
    /// Custom metadata `cursor` of a record-batch message (what the Python SDK reads).
    Metadata,
    /// A JSON object `{"cursor": ...}` after the end-of-stream marker (what the R SDK reads).
    Trailer,
    /// Both.
    Both,
}

/// A fault for one data-page request (schema probes and stats are never faulted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// `429 Too Many Requests` with `Retry-After: <seconds>`.
    TooManyRequests {
        /// The header's value.
        retry_after: u64,
    },
    /// `503 Service Unavailable` (no `Retry-After`).
    Unavailable,
    /// The connection is closed after this many record batches of the page were sent.
    Cut {
        /// Batches sent before the cut.
        after_batches: usize,
    },
    /// After this many batches, a zero-row batch whose metadata has `error` = `message`.
    StreamError {
        /// Batches sent before the error.
        after_batches: usize,
        /// The error text.
        message: String,
    },
}

/// How the server pages and authenticates.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The only table id (dataset UUID) the server holds.
    pub dataset: String,
    /// The accepted API key (or bearer token).
    pub api_key: String,
    /// Rows per page (one request).
    pub page_rows: usize,
    /// Rows per record batch within a page.
    pub batch_rows: usize,
    /// Where cursors go.
    pub carrier: CursorCarrier,
    /// Send the cursor on an extra zero-row batch at the end of the page (a "cursor-only
    /// carrier") instead of on the page's last data batch.
    pub cursor_batch: bool,
}

impl ServerOptions {
    /// Defaults for the tutorial dataset id.
    pub fn new(dataset: &str, api_key: &str) -> ServerOptions {
        ServerOptions {
            dataset: dataset.to_string(),
            api_key: api_key.to_string(),
            page_rows: 1000,
            batch_rows: 250,
            carrier: CursorCarrier::Both,
            cursor_batch: false,
        }
    }
}

/// One request as the server saw it (for tests to check what a client sent).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    /// Path and query.
    pub target: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The JSON body (null when empty or not JSON).
    pub body: Json,
    /// The status answered.
    pub status: u16,
}

struct State {
    options: ServerOptions,
    table: Mutex<RecordBatch>,
    faults: Mutex<Vec<Fault>>,
    log: Mutex<Vec<LoggedRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running server; stops when dropped.
pub struct OdpServer {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl OdpServer {
    /// Serves `table` on `127.0.0.1:port` (0: a free port).
    pub fn start(
        table: RecordBatch,
        options: ServerOptions,
        port: u16,
    ) -> std::io::Result<OdpServer> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            options,
            table: Mutex::new(table),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("odp-server-accept".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let state = Arc::clone(&state);
                        let spawned = std::thread::Builder::new()
                            .name("odp-server-conn".into())
                            .spawn(move || {
                                if let Err(e) = serve(&state, conn) {
                                    tracing::debug!("connection ended: {e}");
                                }
                            });
                        if let Err(e) = spawned {
                            tracing::warn!("cannot spawn a connection thread: {e}");
                        }
                    }
                })?
        };
        Ok(OdpServer {
            addr,
            state,
            stop,
            accept: Some(accept),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Appends rows (same schema) to the table, as an ingest would.
    pub fn append(&self, rows: &RecordBatch) -> Result<(), ArrowError> {
        let mut table = lock(&self.state.table);
        *table = arrow_select::concat::concat_batches(&table.schema(), [&*table, rows])?;
        Ok(())
    }

    /// The table as it is now.
    pub fn table(&self) -> RecordBatch {
        lock(&self.state.table).clone()
    }

    /// Queues faults for the next data-page requests, one fault per request, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.state.faults).extend(faults);
    }

    /// Faults not yet consumed.
    pub fn pending_faults(&self) -> usize {
        lock(&self.state.faults).len()
    }

    /// Every request served so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.state.log).clone()
    }
}

impl Drop for OdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

/// A response before it is written.
struct Response {
    status: u16,
    content_type: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes, then close (the cut fault).
    cut_at: Option<usize>,
}

impl Response {
    fn text(status: u16, text: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: text.into().into_bytes(),
            cut_at: None,
        }
    }

    fn json(value: &Json) -> Response {
        Response {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body: value.to_string().into_bytes(),
            cut_at: None,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// Serves one request on `conn` and closes it.
fn serve(state: &State, conn: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(16 << 20)];
    reader.read_exact(&mut body)?;
    let body: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
    let authorization = headers.get("authorization").cloned();

    let response = route(state, &method, &target, authorization.as_deref(), &body);
    lock(&state.log).push(LoggedRequest {
        target,
        authorization,
        body,
        status: response.status,
    });
    write_response(conn, response)
}

fn write_response(mut conn: TcpStream, r: Response) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    let send = r.cut_at.unwrap_or(r.body.len()).min(r.body.len());
    conn.write_all(&r.body[..send])?;
    conn.flush()?;
    if r.cut_at.is_some() {
        // Reset rather than a clean close, like a dropped link.
        let _ = conn.shutdown(Shutdown::Both);
    }
    Ok(())
}

fn route(state: &State, method: &str, target: &str, auth: Option<&str>, body: &Json) -> Response {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/admin/faults" && method == "POST" {
        return match serde_json::from_value::<Vec<Fault>>(body.clone()) {
            Ok(faults) => {
                lock(&state.faults).extend(faults);
                Response::json(&json!({"queued": lock(&state.faults).len()}))
            }
            Err(e) => Response::text(400, format!("bad faults: {e}")),
        };
    }
    if method != "POST" {
        return Response::text(404, format!("no route {method} {path}"));
    }
    let key = &state.options.api_key;
    let authorized =
        auth.is_some_and(|a| a == format!("ApiKey {key}") || a == format!("Bearer {key}"));
    if !authorized {
        return Response {
            status: 401,
            ..Response::json(&json!({"detail": "invalid or missing credentials"}))
        };
    }
    let table_id = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "table_id")
        .map(|(_, v)| v)
        .unwrap_or("");
    if table_id != state.options.dataset {
        return Response::text(204, "");
    }
    let table = lock(&state.table).clone();
    match path {
        "/api/table/v2/stats" => Response::json(&stats(&table)),
        "/api/table/v2/sdk/select" => select(state, &table, body).unwrap_or_else(|r| *r),
        _ => Response::text(404, format!("no route {path}")),
    }
}

/// The stats document: only the keys the Python SDK's dataclasses accept.
fn stats(table: &RecordBatch) -> Json {
    let columns: Vec<Json> = table
        .schema()
        .fields()
        .iter()
        .zip(table.columns())
        .map(|(field, column)| {
            let (min, max) = min_max(column.as_ref());
            json!({
                "name": field.name(),
                "type": field.data_type().to_string(),
                "null_count": column.null_count(),
                "num_values": column.len() - column.null_count(),
                "min": min,
                "max": max,
                "metadata": field.metadata(),
            })
        })
        .collect();
    json!({
        "num_rows": table.num_rows(),
        "size": table.get_array_memory_size(),
        "columns": columns,
    })
}

fn min_max(column: &dyn Array) -> (Json, Json) {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    let pair = |v: Vec<f64>| {
        let min = v.iter().copied().reduce(f64::min);
        let max = v.iter().copied().reduce(f64::max);
        (json!(min), json!(max))
    };
    match column.data_type() {
        DataType::Float64 => pair(
            column
                .as_primitive::<Float64Type>()
                .iter()
                .flatten()
                .collect(),
        ),
        DataType::Int64 => pair(
            column
                .as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .map(|v| v as f64)
                .collect(),
        ),
        _ => (Json::Null, Json::Null),
    }
}

fn bad(message: impl Into<String>) -> Box<Response> {
    Box::new(Response::text(400, message))
}

/// The `sdk/select` call: the schema probe, or one page of the (filtered, projected) table.
fn select(state: &State, table: &RecordBatch, body: &Json) -> Result<Response, Box<Response>> {
    let arrow = |e: ArrowError| Box::new(Response::text(500, e.to_string()));
    let query = body["query"].as_str().unwrap_or("").trim();
    let projected = match body["cols"].as_array() {
        Some(cols) if !cols.is_empty() => {
            let schema = table.schema();
            let mut indices = Vec::new();
            for c in cols {
                let name = c.as_str().unwrap_or("");
                indices.push(
                    schema
                        .index_of(name)
                        .map_err(|_| bad(format!("unknown column {name:?}")))?,
                );
            }
            table.project(&indices).map_err(arrow)?
        }
        _ => table.clone(),
    };
    if query == SCHEMA_PROBE {
        let mut stream = IpcStream::new(&table.schema()).map_err(arrow)?;
        stream.batch(&table.slice(0, 0), &[]).map_err(arrow)?;
        return Ok(arrow_response(stream.finish()));
    }
    // The filter sees every column, whatever the projection.
    let selected = if query.is_empty() {
        projected
    } else {
        let filter = Filter::parse(query, table, &body["vars"])
            .map_err(|e| bad(format!("bad filter: {e}")))?;
        let mask = filter.evaluate(table);
        arrow_select::filter::filter_record_batch(&projected, &mask).map_err(arrow)?
    };
    let cursor = body["cursor"].as_str().unwrap_or("");
    let offset: usize = if cursor.is_empty() {
        0
    } else {
        cursor
            .strip_prefix("page:")
            .and_then(|o| o.parse().ok())
            .ok_or_else(|| bad(format!("bad cursor {cursor:?}")))?
    };
    let fault = {
        let mut faults = lock(&state.faults);
        (!faults.is_empty()).then(|| faults.remove(0))
    };
    match &fault {
        Some(Fault::TooManyRequests { retry_after }) => {
            return Ok(Response {
                status: 429,
                headers: vec![("Retry-After".into(), retry_after.to_string())],
                ..Response::text(429, "slow down")
            })
        }
        Some(Fault::Unavailable) => return Ok(Response::text(503, "unavailable")),
        _ => {}
    }
    let o = &state.options;
    let start = offset.min(selected.num_rows());
    let end = (start + o.page_rows.max(1)).min(selected.num_rows());
    let next = (end < selected.num_rows()).then(|| format!("page:{end}"));
    let started = chrono::Utc::now().to_rfc3339();
    let mut stream = IpcStream::new(&selected.schema()).map_err(arrow)?;
    let in_metadata = matches!(o.carrier, CursorCarrier::Metadata | CursorCarrier::Both);
    let mut cut_at = None;
    let mut sent = 0;
    let mut at = start;
    while at < end {
        if let Some(Fault::Cut { after_batches }) = &fault {
            if sent == *after_batches {
                cut_at = Some(stream.len());
                break;
            }
        }
        if let Some(Fault::StreamError {
            after_batches,
            message,
        }) = &fault
        {
            if sent == *after_batches {
                stream
                    .batch(&selected.slice(0, 0), &[("error", message)])
                    .map_err(arrow)?;
                return Ok(arrow_response(stream.finish()));
            }
        }
        let len = o.batch_rows.max(1).min(end - at);
        let last = at + len == end;
        let metadata: Vec<(&str, &str)> = match (&next, in_metadata && last && !o.cursor_batch) {
            (Some(c), true) => vec![("cursor", c.as_str())],
            _ => Vec::new(),
        };
        stream
            .batch(&selected.slice(at, len), &metadata)
            .map_err(arrow)?;
        at += len;
        sent += 1;
    }
    if let (Some(c), true, true) = (&next, in_metadata, o.cursor_batch) {
        let stats = json!({"rows": end - start}).to_string();
        stream
            .batch(
                &selected.slice(0, 0),
                &[("cursor", c.as_str()), ("stats", stats.as_str())],
            )
            .map_err(arrow)?;
    }
    let mut bytes = stream.finish();
    if matches!(o.carrier, CursorCarrier::Trailer | CursorCarrier::Both) {
        let mut trailer = json!({"started": started, "ended": chrono::Utc::now().to_rfc3339()});
        if let Some(c) = &next {
            trailer["cursor"] = json!(c);
        }
        bytes.extend_from_slice(trailer.to_string().as_bytes());
    }
    let mut response = arrow_response(bytes);
    response.cut_at = cut_at;
    Ok(response)
}

fn arrow_response(body: Vec<u8>) -> Response {
    Response {
        status: 200,
        content_type: "application/vnd.apache.arrow.stream",
        headers: Vec::new(),
        body,
        cut_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One raw HTTP/1.1 POST; returns the status line and the body.
    fn post(server: &OdpServer, target: &str, auth: &str, body: &str) -> (String, String) {
        let mut conn = TcpStream::connect(server.addr()).unwrap();
        write!(
            conn,
            "POST {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    #[test]
    fn admin_faults_auth_unknown_tables_and_stats() {
        let dataset = "1d801817-742b-4867-82cf-5597673524eb";
        let server = OdpServer::start(
            biota::generate(0, 10, 1).unwrap(),
            ServerOptions::new(dataset, "k"),
            0,
        )
        .unwrap();
        let (status, _) = post(
            &server,
            "/admin/faults",
            "",
            r#"[{"kind":"unavailable"},{"kind":"cut","after_batches":1}]"#,
        );
        assert!(status.contains("200"), "{status}");
        assert_eq!(server.pending_faults(), 2);
        let stats = format!("/api/table/v2/stats?table_id={dataset}");
        assert!(post(&server, &stats, "ApiKey nope", "").0.contains("401"));
        let (status, body) = post(&server, &stats, "ApiKey k", "");
        assert!(status.contains("200"), "{status}");
        let stats: Json = serde_json::from_str(&body).unwrap();
        assert_eq!(stats["num_rows"], 10);
        let other = "/api/table/v2/stats?table_id=00000000-0000-0000-0000-000000000000";
        assert!(post(&server, other, "Bearer k", "").0.contains("204"));
        let select = format!("/api/table/v2/sdk/select?table_id={dataset}&tx_id=");
        let (status, _) = post(&server, &select, "ApiKey k", r#"{"query":"","cursor":""}"#);
        assert!(status.contains("503"), "the queued fault: {status}");
    }
}
