//! The HTTP side: credentials, the three calls the connector makes (`stats`, the schema probe,
//! `sdk/select` pages), status mapping and errors. Blocking `reqwest` on rustls with the
//! `ring` provider; it runs on the connector's background thread, never on a timely worker.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::SchemaRef;
use oceanflow_config::OdpSourceConfig;
use serde_json::{json, Value as Json};

use crate::ipc::{IpcError, IpcStreamReader, Item};
use crate::metrics::OdpMetrics;
use crate::retry::parse_retry_after;

/// The magic query of the schema probe, exactly as the SDKs send it.
pub const SCHEMA_PROBE: &str = "\"fetch\" == \"schema\"";

/// The statuses retried with backoff (the Python SDK's read strategy).
const RETRIED_STATUSES: [u16; 4] = [429, 502, 503, 504];

/// Why an ODP call failed.
#[derive(Debug, thiserror::Error)]
pub enum OdpError {
    /// No API key or token anywhere.
    #[error(
        "no credential: set `api_key` or `bearer_token` on the source, or the ODP_API_KEY \
         environment variable"
    )]
    NoCredential,
    /// 204: the dataset has no tabular store.
    #[error("dataset {dataset} has no table (HTTP 204 No Content from {url})")]
    NoTable {
        /// The dataset id.
        dataset: String,
        /// The URL called (no credentials in it).
        url: String,
    },
    /// 400: the server refused the request, e.g. a bad filter.
    #[error("the server rejected the request (HTTP 400): {message}")]
    BadRequest {
        /// The server's text.
        message: String,
    },
    /// 401/403: the credential was refused.
    #[error(
        "HTTP {status} from {url}: the credential from {credential} was not accepted ({body})"
    )]
    Auth {
        /// 401 or 403.
        status: u16,
        /// The URL called.
        url: String,
        /// Where the credential came from (never the credential itself).
        credential: String,
        /// The server's text.
        body: String,
    },
    /// Any other HTTP status.
    #[error("HTTP {status} from {url}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// The URL called.
        url: String,
        /// The server's text.
        body: String,
        /// The `Retry-After` delay, when given.
        retry_after: Option<Duration>,
    },
    /// The connection failed or dropped.
    #[error("transport: {0}")]
    Transport(String),
    /// The response is not a valid Arrow IPC stream.
    #[error("{0}")]
    Decode(String),
    /// The server reported an error inside the stream (`error` batch metadata).
    #[error("server error in the stream: {0}")]
    Server(String),
    /// Transient failures went on for every allowed attempt.
    #[error("{what} failed {attempts} times in a row; giving up. Last error: {last}")]
    Exhausted {
        /// The call.
        what: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<OdpError>,
    },
    /// The dataset does not fit the source's configuration (missing columns…).
    #[error("{0}")]
    Mismatch(String),
    /// The reader was dropped: stop quietly.
    #[error("stopped")]
    Stopped,
}

impl OdpError {
    /// Whether retrying the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            OdpError::Status { status, .. } => RETRIED_STATUSES.contains(status),
            OdpError::Transport(_) => true,
            _ => false,
        }
    }

    /// The server's requested delay.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OdpError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The label of the `retries` metric: the status, or `connection`.
    pub fn retry_label(&self) -> String {
        match self {
            OdpError::Status { status, .. } => status.to_string(),
            _ => "connection".into(),
        }
    }
}

impl From<IpcError> for OdpError {
    fn from(e: IpcError) -> Self {
        match e {
            IpcError::Io(io) => OdpError::Transport(io.to_string()),
            IpcError::Format(text) => OdpError::Decode(text),
        }
    }
}

/// The `Authorization` header value and where it came from. `Debug` never shows the value.
#[derive(Clone)]
pub struct Credential {
    header: String,
    source: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential(from {}, <redacted>)", self.source)
    }
}

impl Credential {
    /// The config's `api_key`, else its `bearer_token`, else `$ODP_API_KEY` (the Python SDK's
    /// order).
    pub fn resolve(cfg: &OdpSourceConfig) -> Result<Credential, OdpError> {
        if let Some(key) = &cfg.api_key {
            return Ok(Credential {
                header: format!("ApiKey {}", key.0.trim()),
                source: format!("the `api_key` setting of source {}", cfg.name),
            });
        }
        if let Some(token) = &cfg.bearer_token {
            let token = token.0.trim();
            let token = token.strip_prefix("Bearer ").unwrap_or(token);
            return Ok(Credential {
                header: format!("Bearer {token}"),
                source: format!("the `bearer_token` setting of source {}", cfg.name),
            });
        }
        match std::env::var("ODP_API_KEY") {
            Ok(key) if !key.trim().is_empty() => Ok(Credential {
                header: format!("ApiKey {}", key.trim()),
                source: "the ODP_API_KEY environment variable".into(),
            }),
            _ => Err(OdpError::NoCredential),
        }
    }

    /// Where the credential came from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// A client for one dataset.
pub struct OdpClient {
    http: reqwest::blocking::Client,
    base_url: String,
    dataset: String,
    credential: Credential,
    metrics: Arc<OdpMetrics>,
}

/// Counts body bytes into the `bytes` metric as they are read.
pub struct Counted<R> {
    inner: R,
    metrics: Arc<OdpMetrics>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.metrics.bytes.inc_by(n as u64);
        Ok(n)
    }
}

/// The stream of one select page.
pub type PageStream = IpcStreamReader<Counted<reqwest::blocking::Response>>;

impl OdpClient {
    /// A client with a per-request timeout of the server budget plus a minute.
    pub fn new(
        cfg: &OdpSourceConfig,
        credential: Credential,
        metrics: Arc<OdpMetrics>,
    ) -> Result<OdpClient, OdpError> {
        // reqwest is built without a default crypto provider (no aws-lc); install ring. An
        // error only means a provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::blocking::Client::builder()
            .user_agent(concat!("oceanflow-odp/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .timeout(cfg.timeout + Duration::from_secs(60))
            .build()
            .map_err(|e| OdpError::Transport(format!("building the HTTP client: {e}")))?;
        Ok(OdpClient {
            http,
            base_url: cfg.base_url.trim().trim_end_matches('/').to_string(),
            dataset: cfg.dataset.clone(),
            credential,
            metrics,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}?table_id={}&tx_id=", self.base_url, self.dataset)
    }

    /// One POST; non-2xx statuses become errors.
    fn post(
        &self,
        call: &str,
        path: &str,
        body: Option<&Json>,
        accept: &str,
    ) -> Result<reqwest::blocking::Response, OdpError> {
        let url = self.url(path);
        self.metrics.requests.with_label_values(&[call]).inc();
        let mut request = self
            .http
            .post(&url)
            .header(reqwest::header::AUTHORIZATION, &self.credential.header)
            .header(reqwest::header::ACCEPT, accept);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .map_err(|e| OdpError::Transport(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        if status == 204 {
            return Err(OdpError::NoTable {
                dataset: self.dataset.clone(),
                url,
            });
        }
        if response.status().is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = response.text().unwrap_or_default();
        let body = error_text(&text);
        Err(match status {
            400 => OdpError::BadRequest { message: body },
            401 | 403 => OdpError::Auth {
                status,
                url,
                credential: self.credential.source.clone(),
                body,
            },
            _ => OdpError::Status {
                status,
                url,
                body,
                retry_after,
            },
        })
    }

    /// `stats`: row count, size and column statistics (JSON).
    pub fn stats(&self) -> Result<Json, OdpError> {
        let response = self.post("stats", "/api/table/v2/stats", None, "application/json")?;
        let text = response
            .text()
            .map_err(|e| OdpError::Transport(e.without_url().to_string()))?;
        serde_json::from_str(&text).map_err(|e| {
            OdpError::Decode(format!("stats is not JSON ({e}): {}", error_text(&text)))
        })
    }

    /// The schema probe: one zero-row batch whose schema is the table's.
    pub fn schema(&self) -> Result<SchemaRef, OdpError> {
        let body = select_body(Some(SCHEMA_PROBE), None, None, "", 5.0);
        let mut stream = self.select_page("schema", &body)?;
        match stream.next_item()? {
            Item::Batch { batch, .. } => Ok(batch.schema()),
            // A stream with a schema but no batch still names the columns; an empty body
            // means no table.
            Item::End { .. } => stream.schema().ok_or_else(|| OdpError::NoTable {
                dataset: self.dataset.clone(),
                url: self.url("/api/table/v2/sdk/select"),
            }),
        }
    }

    /// Opens one `sdk/select` page (a single attempt); batches are read from the stream as
    /// they arrive.
    pub fn select_page(&self, call: &str, body: &Json) -> Result<PageStream, OdpError> {
        let response = self.post(
            call,
            "/api/table/v2/sdk/select",
            Some(body),
            "application/vnd.apache.arrow.stream",
        )?;
        Ok(IpcStreamReader::new(Counted {
            inner: response,
            metrics: Arc::clone(&self.metrics),
        }))
    }
}

/// The `sdk/select` body, with every key the Python SDK sends.
pub fn select_body(
    query: Option<&str>,
    cols: Option<&[String]>,
    vars: Option<&Json>,
    cursor: &str,
    timeout_secs: f64,
) -> Json {
    json!({
        "query": query,
        "cols": cols,
        "cursor": cursor,
        "aggr": null,
        "by": null,
        "vars": vars,
        "timeout": timeout_secs,
    })
}

/// The message of an error body: JSON `message`, `error` or `detail` (as the R SDK reads
/// them), else the text, shortened.
fn error_text(text: &str) -> String {
    let parsed = serde_json::from_str::<Json>(text).ok();
    let message = parsed.as_ref().and_then(|v| {
        ["message", "error", "detail"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Json::as_str))
    });
    let message = message.unwrap_or(text).trim();
    match message.char_indices().nth(500) {
        Some((i, _)) => format!("{}…", &message[..i]),
        None => message.to_string(),
    }
}
