//! Message payloads that do not compress to nothing. Random bytes are made
//! once; each message is the next slice of the pool, so no per-message work
//! beyond a copy, and a batch repeats nothing a compressor could find (the
//! pool is larger than a producer batch).

use rand::RngCore;

/// Smallest pool: larger than librdkafka's default 1 MB batch.
const MIN_POOL_BYTES: usize = 4 << 20;

/// A ring of random bytes handing out `size`-byte slices.
pub struct PayloadPool {
    bytes: Vec<u8>,
    size: usize,
    next: usize,
}

impl PayloadPool {
    /// A pool for payloads of `size` bytes.
    pub fn new(size: usize) -> Self {
        let len = MIN_POOL_BYTES.max(size.saturating_mul(4)) + size;
        let mut bytes = vec![0u8; len];
        rand::rng().fill_bytes(&mut bytes);
        Self {
            bytes,
            size,
            next: 0,
        }
    }

    /// The next payload.
    pub fn next_payload(&mut self) -> &[u8] {
        if self.next + self.size > self.bytes.len() {
            self.next = 0;
        }
        let start = self.next;
        // An odd stride keeps successive passes over the ring misaligned.
        self.next += self.size + 1;
        &self.bytes[start..start + self.size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn payloads_have_the_size_and_look_random() {
        let mut pool = PayloadPool::new(1024);
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let p = pool.next_payload();
            assert_eq!(p.len(), 1024);
            seen.insert(p.to_vec());
        }
        // Far more distinct payloads than a batch holds.
        assert!(seen.len() > 4000, "only {} distinct payloads", seen.len());
        let p = pool.next_payload();
        let distinct: HashSet<u8> = p.iter().copied().collect();
        assert!(
            distinct.len() > 200,
            "{} distinct byte values",
            distinct.len()
        );
        assert!(p.iter().filter(|b| **b == 0).count() < 32);
    }

    #[test]
    fn tiny_and_huge_sizes_work() {
        assert_eq!(PayloadPool::new(1).next_payload().len(), 1);
        let mut big = PayloadPool::new(1_000_000);
        for _ in 0..10 {
            assert_eq!(big.next_payload().len(), 1_000_000);
        }
    }
}
