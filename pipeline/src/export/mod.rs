//! Exports: the JSON tables, Prometheus exposition and the HTTP server that serves both.

pub mod http;
pub mod output;
pub mod prometheus;
