//! Exports: the JSON tables, Prometheus exposition and the HTTP server that serves both, and
//! the Kafka changelog of aggregate changes.

pub mod changelog;
pub mod http;
pub mod output;
pub mod prometheus;
