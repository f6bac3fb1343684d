//! The send-time header every produced message carries: wall-clock
//! nanoseconds since the Unix epoch, 8 bytes big-endian. Kafka's own
//! CreateTime has only millisecond resolution, too coarse for a 5 ms target.

use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::message::Headers;

/// Header key of the send time.
pub const SEND_TIME_HEADER: &str = "loadgen-send-ns";

/// Nanoseconds since the Unix epoch now (0 if the clock is before 1970).
pub fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The header value for a send time.
pub fn encode_send_time(ns: u64) -> [u8; 8] {
    ns.to_be_bytes()
}

/// The send time a record carries, `None` when the header is missing or is
/// not exactly 8 bytes (records from other producers, corrupt data).
pub fn decode_send_time<H: Headers + ?Sized>(headers: Option<&H>) -> Option<u64> {
    let headers = headers?;
    (0..headers.count())
        .filter_map(|i| headers.try_get(i))
        .find(|h| h.key == SEND_TIME_HEADER)
        .and_then(|h| h.value)
        .and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders};

    #[test]
    fn round_trip_and_rejects_bad_values() {
        let ns = wall_clock_ns();
        let good = OwnedHeaders::new().insert(Header {
            key: SEND_TIME_HEADER,
            value: Some(&encode_send_time(ns)),
        });
        assert_eq!(decode_send_time(Some(&good)), Some(ns));

        let short = OwnedHeaders::new().insert(Header {
            key: SEND_TIME_HEADER,
            value: Some(&[1u8, 2, 3]),
        });
        assert_eq!(decode_send_time(Some(&short)), None);
        let null = OwnedHeaders::new().insert(Header::<&[u8]> {
            key: SEND_TIME_HEADER,
            value: None,
        });
        assert_eq!(decode_send_time(Some(&null)), None);
        let other = OwnedHeaders::new().insert(Header {
            key: "trace-id",
            value: Some(&encode_send_time(ns)),
        });
        assert_eq!(decode_send_time(Some(&other)), None);
        assert_eq!(decode_send_time::<OwnedHeaders>(None), None);
    }
}
