//! Settings from environment variables, validated before a service connects to
//! anything. A bad value becomes one [`ConfigError`] line naming the variable,
//! the value and what is accepted; binaries print it and exit with code 2
//! ([`EXIT_BAD_CONFIG`]).

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// Exit code of every service when its settings are invalid.
pub const EXIT_BAD_CONFIG: i32 = 2;

/// A setting that cannot be used, with everything the user needs to fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {var}={value:?}: expected {expected}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: String,
    /// The value it had.
    pub value: String,
    /// What would have been accepted, e.g. "a number from 1 to 100".
    pub expected: String,
}

/// Where settings come from. The process environment in production; a map in
/// tests, because changing the process environment is unsafe in Rust 2024.
pub trait EnvSource {
    /// The variable's value, `None` when unset.
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl EnvSource for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).map(|v| v.to_string())
    }
}

/// Reads and validates settings, one variable at a time.
pub struct Settings<'a> {
    env: &'a dyn EnvSource,
}

impl<'a> Settings<'a> {
    pub fn new(env: &'a dyn EnvSource) -> Self {
        Self { env }
    }

    /// The raw value: `None` when unset. A set but empty (or all-blank) value
    /// is an error, because it is almost always a typo in a compose file.
    fn raw(&self, var: &str, expected: &str) -> Result<Option<String>, ConfigError> {
        match self.env.get(var) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Err(ConfigError {
                var: var.to_string(),
                value: v,
                expected: expected.to_string(),
            }),
            Some(v) => Ok(Some(v.trim().to_string())),
        }
    }

    /// A number within `range`, or `default` when unset.
    pub fn number<T>(
        &self,
        var: &str,
        default: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let expected = format!("a number from {} to {}", range.start(), range.end());
        let Some(raw) = self.raw(var, &expected)? else {
            return Ok(default);
        };
        let bad = || ConfigError {
            var: var.to_string(),
            value: raw.clone(),
            expected: expected.clone(),
        };
        let value: T = raw.parse().map_err(|_| bad())?;
        // NaN compares false with everything, so it fails this check too.
        if !(value >= *range.start() && value <= *range.end()) {
            return Err(bad());
        }
        Ok(value)
    }

    /// A non-empty string, or `default` when unset.
    pub fn string(&self, var: &str, default: &str) -> Result<String, ConfigError> {
        Ok(self
            .raw(var, "a non-empty value")?
            .unwrap_or_else(|| default.to_string()))
    }

    /// A string from a fixed list of choices, or `default` when unset.
    pub fn choice(
        &self,
        var: &str,
        default: &str,
        choices: &[&str],
    ) -> Result<String, ConfigError> {
        let expected = format!("one of {}", choices.join(", "));
        let Some(raw) = self.raw(var, &expected)? else {
            return Ok(default.to_string());
        };
        if choices.contains(&raw.as_str()) {
            Ok(raw)
        } else {
            Err(ConfigError {
                var: var.to_string(),
                value: raw,
                expected,
            })
        }
    }

    /// A `host:port` listen address with a numeric host, or `default`.
    pub fn socket_addr(&self, var: &str, default: &str) -> Result<SocketAddr, ConfigError> {
        let expected = "an address like 0.0.0.0:9100";
        let raw = self
            .raw(var, expected)?
            .unwrap_or_else(|| default.to_string());
        raw.parse().map_err(|_| ConfigError {
            var: var.to_string(),
            value: raw.clone(),
            expected: expected.to_string(),
        })
    }

    /// A `host:port` pair to dial (host may be a name), or `default`.
    pub fn host_port(&self, var: &str, default: &str) -> Result<String, ConfigError> {
        let expected = "host:port with a port from 1 to 65535 (comma-separated for several)";
        let raw = self
            .raw(var, expected)?
            .unwrap_or_else(|| default.to_string());
        let valid = raw.split(',').all(|part| {
            part.trim().rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            })
        });
        if valid {
            Ok(raw)
        } else {
            Err(ConfigError {
                var: var.to_string(),
                value: raw,
                expected: expected.to_string(),
            })
        }
    }

    /// An `http://` or `https://` URL, or `default`.
    pub fn http_url(&self, var: &str, default: &str) -> Result<String, ConfigError> {
        let expected = "an http:// or https:// URL";
        let raw = self
            .raw(var, expected)?
            .unwrap_or_else(|| default.to_string());
        let rest = raw
            .strip_prefix("http://")
            .or_else(|| raw.strip_prefix("https://"));
        match rest {
            Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(raw),
            _ => Err(ConfigError {
                var: var.to_string(),
                value: raw,
                expected: expected.to_string(),
            }),
        }
    }
}

/// The `KEY=VALUE` pairs of an env-file text (`services/sandbox/versions.env`),
/// blank lines and `#` comments skipped.
pub fn parse_key_values(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn key_values_skip_comments_and_blanks() {
        let pairs = parse_key_values("# pins\n\nA=1\n  B = x=y \nnot a pair\n");
        assert_eq!(
            pairs,
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
    }

    #[test]
    fn unset_number_takes_default() {
        let e = env(&[]);
        let s = Settings::new(&e);
        assert_eq!(s.number("RATE", 10u32, 1..=100), Ok(10));
    }

    #[test]
    fn number_out_of_range_names_variable_value_and_range() {
        let e = env(&[("RATE", "1000")]);
        let err = Settings::new(&e)
            .number("RATE", 10u32, 1..=100)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid RATE=\"1000\": expected a number from 1 to 100"
        );
    }

    #[test]
    fn number_rejects_text_empty_and_nan() {
        for bad in ["abc", "", "  ", "NaN", "-1"] {
            let e: HashMap<String, String> = [("X".to_string(), bad.to_string())].into();
            let r = Settings::new(&e).number("X", 1.0f64, 0.0..=5.0);
            assert!(r.is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn host_port_accepts_names_and_lists() {
        let e = env(&[("B", "kafka:9092,k3d-x-server-0:31092")]);
        assert!(Settings::new(&e).host_port("B", "localhost:9092").is_ok());
        let e = env(&[("B", "kafka")]);
        assert!(Settings::new(&e).host_port("B", "localhost:9092").is_err());
        let e = env(&[("B", "kafka:0")]);
        assert!(Settings::new(&e).host_port("B", "localhost:9092").is_err());
    }

    #[test]
    fn socket_addr_and_url_and_choice() {
        let e = env(&[("A", "0.0.0.0:80"), ("U", "ftp://x"), ("C", "b")]);
        let s = Settings::new(&e);
        assert_eq!(s.socket_addr("A", "1.2.3.4:5").unwrap().port(), 80);
        assert!(s.http_url("U", "http://x").is_err());
        assert_eq!(
            s.http_url("V", "http://x:1/stats").unwrap(),
            "http://x:1/stats"
        );
        assert_eq!(s.choice("C", "a", &["a", "b"]).unwrap(), "b");
        assert!(s.choice("C", "a", &["a"]).is_err());
    }
}
