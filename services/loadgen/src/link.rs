//! Whether the client is connected to a broker, with outages logged once:
//! one line when the connection is lost, one when it is back (with how long
//! it was down), nothing per message or per reconnect attempt.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Connection state shared by the Kafka callbacks and the HTTP server.
#[derive(Debug, Default)]
pub struct Link {
    connected: AtomicBool,
    ever_connected: AtomicBool,
    /// When the current outage began; `None` while connected or before the
    /// first connection.
    down_since: Mutex<Option<Instant>>,
}

/// A change of state worth one log line.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// First connection since start.
    Connected,
    /// Lost the broker.
    Lost,
    /// Back after an outage of this long.
    Recovered(Duration),
}

impl Link {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a broker connection works now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Whether a broker was ever reached since start (what `/healthz` reports:
    /// a broker restart the agent caused should not mark us unhealthy).
    pub fn ever_connected(&self) -> bool {
        self.ever_connected.load(Ordering::Relaxed)
    }

    /// Evidence of a working connection (a delivery, a message, metadata).
    /// Cheap when already connected: one relaxed load.
    pub fn mark_up(&self) {
        if self.is_connected() {
            return;
        }
        if let Some(t) = self.set_up() {
            log_transition(&t);
        }
    }

    /// Evidence of no connection at all; `why` goes into the one log line.
    pub fn mark_down(&self, why: &str) {
        if self.set_down() == Some(Transition::Lost) {
            tracing::warn!(
                "lost the connection to the broker ({why}); counting errors and retrying quietly until it is back"
            );
        }
    }

    /// Flip to connected; the transition, if this was one.
    fn set_up(&self) -> Option<Transition> {
        if self.connected.swap(true, Ordering::AcqRel) {
            return None;
        }
        let first = !self.ever_connected.swap(true, Ordering::AcqRel);
        let since = self.lock_down_since().take();
        match (first, since) {
            (true, _) => Some(Transition::Connected),
            (false, Some(t)) => Some(Transition::Recovered(t.elapsed())),
            (false, None) => None,
        }
    }

    /// Flip to disconnected; `Lost` if this was a transition after a
    /// connection existed (before the first connection there is nothing to
    /// lose, and the startup code reports the wait itself).
    fn set_down(&self) -> Option<Transition> {
        if !self.connected.swap(false, Ordering::AcqRel) {
            return None;
        }
        *self.lock_down_since() = Some(Instant::now());
        Some(Transition::Lost)
    }

    fn lock_down_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // The guarded value is a plain Option; a panic elsewhere cannot leave
        // it inconsistent.
        self.down_since.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn log_transition(t: &Transition) {
    match t {
        Transition::Connected => tracing::info!("connected to the broker"),
        Transition::Recovered(d) => tracing::info!(
            "broker reachable again after {:.1} s outage",
            d.as_secs_f64()
        ),
        Transition::Lost => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_happen_once_each() {
        let link = Link::new();
        assert!(!link.ever_connected());
        // Nothing to lose before the first connection.
        assert_eq!(link.set_down(), None);
        assert_eq!(link.set_up(), Some(Transition::Connected));
        assert_eq!(link.set_up(), None);
        assert!(link.is_connected() && link.ever_connected());
        assert_eq!(link.set_down(), Some(Transition::Lost));
        assert_eq!(link.set_down(), None);
        assert!(!link.is_connected());
        assert!(link.ever_connected(), "health stays up through an outage");
        assert!(matches!(link.set_up(), Some(Transition::Recovered(_))));
        assert_eq!(link.set_up(), None);
    }
}
