//! `--metrics ADDR` for every front-end: the endpoint starts before the target is
//! opened, so that an address in use fails before anything is attached.
use anyhow::Result;
use periscope_exporters::MetricsServer;

pub fn start(addr: Option<&str>) -> Result<Option<MetricsServer>> {
    addr.map(MetricsServer::start)
        .transpose()
        .map_err(anyhow::Error::msg)
}
