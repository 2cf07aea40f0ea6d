//! `odp-test-server`: serves one table over the ODP tabular v2 protocol on 127.0.0.1 until
//! killed. The table is the seeded biota-like generator's rows, or an Arrow IPC file/stream.
//! The first line on stdout is `listening on http://127.0.0.1:<port>` (port 0 = any free port).
//! Faults: `--fault '{"kind":"too_many_requests","retry_after":1}'` (repeatable) or
//! `POST /admin/faults` with a JSON array while running.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use oceanflow_odp_server::{biota, CursorCarrier, Fault, OdpServer, ServerOptions};

#[derive(Debug, Parser)]
#[command(
    name = "odp-test-server",
    about = "A local ODP tabular v2 server for tests"
)]
struct Args {
    /// Dataset UUID the server answers for.
    #[arg(long, default_value = "1d801817-742b-4867-82cf-5597673524eb")]
    dataset: String,
    /// Accepted API key.
    #[arg(long, default_value = "sk_test")]
    api_key: String,
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Rows of the generated biota-like table (ignored with --file).
    #[arg(long, default_value_t = 10_000)]
    rows: usize,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Serve this Arrow IPC file (`.arrow`) or stream (`.arrows`) instead.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Rows per page.
    #[arg(long, default_value_t = 1000)]
    page_rows: usize,
    /// Rows per record batch.
    #[arg(long, default_value_t = 250)]
    batch_rows: usize,
    /// metadata, trailer or both.
    #[arg(long, default_value = "both")]
    carrier: String,
    /// Send cursors on an extra zero-row batch.
    #[arg(long)]
    cursor_batch: bool,
    /// A fault as JSON, queued for the data-page requests in order.
    #[arg(long)]
    fault: Vec<String>,
}

fn load(path: &PathBuf) -> Result<arrow_array::RecordBatch> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let batches: Vec<_> = match arrow_ipc::reader::FileReader::try_new(file, None) {
        Ok(reader) => reader.collect::<Result<_, _>>()?,
        Err(_) => {
            let file = std::fs::File::open(path)?;
            arrow_ipc::reader::StreamReader::try_new(file, None)?.collect::<Result<_, _>>()?
        }
    };
    let schema = batches
        .first()
        .map(|b| b.schema())
        .with_context(|| format!("{} holds no batch", path.display()))?;
    Ok(arrow_select::concat::concat_batches(&schema, &batches)?)
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let table = match &args.file {
        Some(path) => load(path)?,
        None => biota::generate(0, args.rows, args.seed)?,
    };
    let carrier = match args.carrier.as_str() {
        "metadata" => CursorCarrier::Metadata,
        "trailer" => CursorCarrier::Trailer,
        "both" => CursorCarrier::Both,
        other => anyhow::bail!("--carrier: expected metadata, trailer or both, got {other:?}"),
    };
    let options = ServerOptions {
        page_rows: args.page_rows,
        batch_rows: args.batch_rows,
        carrier,
        cursor_batch: args.cursor_batch,
        ..ServerOptions::new(&args.dataset, &args.api_key)
    };
    let faults = args
        .fault
        .iter()
        .map(|f| serde_json::from_str::<Fault>(f).with_context(|| format!("--fault {f}")))
        .collect::<Result<Vec<_>>>()?;
    let rows = table.num_rows();
    let server = OdpServer::start(table, options, args.port)?;
    server.inject(faults);
    let mut out = std::io::stdout();
    writeln!(out, "listening on {}", server.base_url())?;
    out.flush()?;
    tracing::info!(rows, dataset = %args.dataset, "serving");
    loop {
        std::thread::park();
    }
}
