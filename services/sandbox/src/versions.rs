//! Pinned versions of what the sandbox runs or drives. The same values live
//! in `services/sandbox/versions.env` for Dockerfiles and xtask; a test keeps
//! the two in step, and the manifests' tests check the Kafka image tag.

/// The k3d CLI in the sandbox image.
pub const K3D_VERSION: &str = "v5.9.0";
/// The k3s node image; its Kubernetes minor matches k8s-openapi's `v1_33`.
pub const K3S_IMAGE: &str = "rancher/k3s:v1.33.4-k3s1";
/// kubectl in the sandbox image (vibectl runs it); one minor newer than the
/// cluster is within kubectl's supported version skew.
pub const KUBECTL_VERSION: &str = "v1.34.9";
/// The broker image; its own entrypoint turns `KAFKA_*` env vars into
/// broker properties.
pub const KAFKA_IMAGE: &str = "apache/kafka:3.9.1";
/// vibectl from PyPI.
pub const VIBECTL_VERSION: &str = "0.11.6";

/// `versions.env` as shipped, for tools that read it at build time.
pub const VERSIONS_ENV: &str = include_str!("../versions.env");

/// The `KEY=VALUE` pairs of a `versions.env`-style text, comments skipped.
pub use demo_common::config::parse_key_values as parse_versions_env;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_env_matches_the_constants() {
        let pairs = parse_versions_env(VERSIONS_ENV);
        let expected = [
            ("K3D_VERSION", K3D_VERSION),
            ("K3S_IMAGE", K3S_IMAGE),
            ("KUBECTL_VERSION", KUBECTL_VERSION),
            ("KAFKA_IMAGE", KAFKA_IMAGE),
            ("VIBECTL_VERSION", VIBECTL_VERSION),
        ];
        // versions.env also carries download checksums for the Dockerfile.
        for (key, value) in expected {
            let found = pairs.iter().find(|(k, _)| k == key);
            assert_eq!(found.map(|(_, v)| v.as_str()), Some(value), "{key}");
        }
    }

    #[test]
    fn no_pin_is_latest_and_images_have_tags() {
        for (key, value) in parse_versions_env(VERSIONS_ENV) {
            assert!(!value.contains("latest"), "{key}={value}");
            if key.ends_with("_IMAGE") {
                let tag = value.rsplit_once(':').map(|(_, t)| t);
                assert!(tag.is_some_and(|t| !t.is_empty()), "{key} has no tag");
            }
        }
    }

    #[test]
    fn k3s_minor_matches_the_kubernetes_api_we_compile_against() {
        // k8s-openapi is built with feature v1_33; a k3s of another minor
        // could serve objects our types do not describe.
        assert!(K3S_IMAGE.contains(":v1.33."), "{K3S_IMAGE}");
        // kubectl supports servers one minor older or newer than itself.
        assert!(
            KUBECTL_VERSION.starts_with("v1.32.")
                || KUBECTL_VERSION.starts_with("v1.33.")
                || KUBECTL_VERSION.starts_with("v1.34."),
            "{KUBECTL_VERSION}"
        );
    }
}
