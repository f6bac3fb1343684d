//! Integration tests of the load generator: both roles in-process against
//! librdkafka's mock cluster (counts, skew, broker outage), against a real
//! tansu broker process, the HTTP endpoints and health check, and the
//! binary itself: bad settings, and SIGTERM as Compose sends it.

mod http;
mod mock;
mod process;
mod settings;
mod support;
mod tansu;
