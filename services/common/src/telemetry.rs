//! Logging set-up shared by every service: one line per event on stderr,
//! level from `RUST_LOG` with `info` as the default.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. Safe to call more than once (tests); later
/// calls leave the first subscriber in place.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
