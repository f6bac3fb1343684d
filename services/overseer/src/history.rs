//! The charts' history: the last poll results, bounded so memory stays flat
//! however long the demo runs.

use std::collections::VecDeque;

use crate::window::Point;

/// At most `capacity` points, oldest dropped first.
#[derive(Debug)]
pub struct History {
    points: VecDeque<Point>,
    capacity: usize,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            points: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    pub fn push(&mut self, point: Point) {
        if self.points.len() == self.capacity {
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
            p99_ms: Some(1.0),
            target_ms: 5.0,
            producer_rate: None,
            producer_target_rate: None,
            consumer_rate: None,
        }
    }

    #[test]
    fn keeps_the_newest_points_and_never_grows_past_capacity() {
        let mut h = History::new(3);
        for t in 0..10_000 {
            h.push(point(t));
            assert!(h.len() <= 3);
        }
        let times: Vec<u64> = h.points().map(|p| p.time_ms).collect();
        assert_eq!(times, vec![9_997, 9_998, 9_999]);
    }
}
