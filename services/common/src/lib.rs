//! What the demo's services share: settings read from the environment and
//! validated the same way everywhere, the status-directory protocol
//! (`/tmp/status`), the JSON the services exchange, logging set-up and the
//! shutdown signal.

pub mod config;
pub mod shutdown;
pub mod stats;
pub mod status;
pub mod telemetry;
