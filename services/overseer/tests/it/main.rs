//! The overseer with real `loadgen` processes against librdkafka's mock
//! cluster, its settings checks, and the dashboard in headless Chromium.

mod browser;
mod live;
mod settings;
mod support;
