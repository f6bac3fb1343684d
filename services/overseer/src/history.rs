//! The charts' history: the last poll results, bounded in count and in time
//! so memory stays flat however long the demo runs.

use std::collections::VecDeque;
use std::time::Duration;

use crate::window::Point;

/// At most `capacity` points, none older than `span` before the newest.
#[derive(Debug)]
pub struct History {
    points: VecDeque<Point>,
    capacity: usize,
    span_ms: u64,
}

impl History {
    /// Room for `capacity` points covering `span`.
    pub fn new(capacity: usize, span: Duration) -> Self {
        let capacity = capacity.max(1);
        Self {
            points: VecDeque::with_capacity(capacity),
            capacity,
            span_ms: span.as_millis() as u64,
        }
    }

    /// Add the newest point, dropping the oldest ones that no longer fit.
    pub fn push(&mut self, point: Point) {
        // A clock stepped back would leave newer-looking points behind.
        while self
            .points
            .back()
            .is_some_and(|p| p.time_ms > point.time_ms)
        {
            self.points.pop_back();
        }
        let oldest_kept = point.time_ms.saturating_sub(self.span_ms);
        while self.points.front().is_some_and(|p| p.time_ms < oldest_kept)
            || self.points.len() >= self.capacity
        {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    /// Oldest first.
    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(time_ms: u64) -> Point {
        Point {
            time_ms,
            p50_ms: None,
            p95_ms: None,
            p99_ms: Some(1.0),
            p999_ms: None,
            max_ms: None,
            target_ms: 5.0,
            producer_rate: None,
            producer_target_rate: None,
            consumer_rate: None,
        }
    }

    fn times(h: &History) -> Vec<u64> {
        h.points().map(|p| p.time_ms).collect()
    }

    #[test]
    fn keeps_the_newest_points_and_never_grows_past_capacity() {
        let mut h = History::new(3, Duration::from_secs(3600));
        for t in 0..10_000 {
            h.push(point(t));
            assert!(h.len() <= 3);
        }
        assert_eq!(times(&h), [9_997, 9_998, 9_999]);
    }

    #[test]
    fn drops_points_older_than_the_span() {
        let mut h = History::new(100, Duration::from_secs(30));
        for t in [0, 10_000, 20_000, 30_000] {
            h.push(point(t));
        }
        assert_eq!(h.len(), 4, "exactly 30 s old is still shown");
        // A gap (a suspended laptop) leaves only what fits the span.
        h.push(point(55_000));
        assert_eq!(times(&h), [30_000, 55_000]);
    }

    #[test]
    fn a_clock_stepped_back_does_not_leave_future_points() {
        let mut h = History::new(100, Duration::from_secs(30));
        for t in [10_000, 11_000, 12_000] {
            h.push(point(t));
        }
        h.push(point(10_500));
        assert_eq!(times(&h), [10_000, 10_500]);
    }
}
