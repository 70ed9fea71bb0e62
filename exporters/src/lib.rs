//! What periscope's probes learn, served in the formats the tools a team already runs
//! read: Prometheus' text exposition format on an HTTP endpoint (`--metrics ADDR`).
//! Data flows one way: the session's counters and histograms are copied into a
//! `Snapshot` by the front-end's loop, and the server renders the latest one.
pub mod prometheus;
pub mod server;
pub mod snapshot;

pub use server::MetricsServer;
pub use snapshot::{ProbeMetrics, Snapshot};
