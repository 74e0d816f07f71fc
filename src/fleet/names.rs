//! Fleet's name builders (`internal/names`): used to predict the namespace a
//! BundleDeployment lives in and the setID on deployed objects.

use sha2::{Digest, Sha256};

/// Longest name `SafeConcatName` returns (a Kubernetes label value).
pub const MAX_NAME_LEN: usize = 63;

/// Fleet's `SafeConcatName`: joins `parts` with `-`; if the result is 64 bytes
/// or longer it is cut and suffixed with a short SHA-256 so it stays a valid
/// 63-character Kubernetes name.
///
/// Fleet works on bytes; Kubernetes names are ASCII so that is the normal
/// case. For non-ASCII input (never valid in Kubernetes) a cut inside a
/// character is replaced lossily instead of panicking.
pub fn safe_concat_name(parts: &[&str]) -> String {
    let full = parts.join("-");
    let bytes = full.as_bytes();
    if bytes.len() < 64 {
        return full;
    }
    let digest = hex_lower(&Sha256::digest(bytes));
    let c = bytes[56];
    if c.is_ascii_lowercase() || c.is_ascii_digit() {
        format!("{}-{}", String::from_utf8_lossy(&bytes[..57]), &digest[..5])
    } else {
        format!("{}-{}", String::from_utf8_lossy(&bytes[..56]), &digest[..6])
    }
}

/// Fleet's `KeyHash`: first 12 hex chars of SHA-256 over the first 100 bytes.
pub fn key_hash(s: &str) -> String {
    let bytes = s.as_bytes();
    let cut = &bytes[..bytes.len().min(100)];
    let mut digest = hex_lower(&Sha256::digest(cut));
    digest.truncate(12);
    digest
}

/// Namespace of a Cluster's BundleDeployments on the management cluster
/// (`cluster.Status.Namespace`), e.g. `fleet-local`/`local` →
/// `cluster-fleet-local-local-1a3d67d0a899`.
pub fn cluster_namespace(cluster_ns: &str, cluster_name: &str) -> String {
    let hash = key_hash(&format!("{cluster_ns}::{cluster_name}"));
    safe_concat_name(&["cluster", cluster_ns, cluster_name, &hash])
}

/// Lowercase hex encoding (what Go's `hex.EncodeToString` produces).
/// Runs for every key of the owner index (four per BundleDeployment), so it avoids
/// `format!`'s per-byte machinery.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_joined_unchanged() {
        assert_eq!(
            safe_concat_name(&["default", "lots-config2"]),
            "default-lots-config2"
        );
        assert_eq!(safe_concat_name(&[]), "");
    }

    #[test]
    fn long_names_are_cut_to_63_with_hash_suffix() {
        let long = "a".repeat(70);
        let out = safe_concat_name(&[&long]);
        assert_eq!(out.len(), 63);
        assert!(out.starts_with(&"a".repeat(57)));
        assert_eq!(&out[57..58], "-");
        // byte 56 is '-' → the 56-char variant with a 6-char hash
        let with_dash = format!("{}-{}", "b".repeat(56), "c".repeat(20));
        let out = safe_concat_name(&[&with_dash]);
        assert_eq!(out.len(), 63);
        assert_eq!(&out[..57], format!("{}-", "b".repeat(56)));
        // exactly 63 stays unchanged, 64 is cut
        assert_eq!(safe_concat_name(&[&"x".repeat(63)]), "x".repeat(63));
        assert_eq!(safe_concat_name(&[&"x".repeat(64)]).len(), 63);
    }

    #[test]
    fn non_ascii_never_panics() {
        let s = "é".repeat(40); // 80 bytes, byte 56/57 inside a character
        let out = safe_concat_name(&[&s]);
        assert!(!out.is_empty());
        let _ = key_hash(&"ü".repeat(80));
    }

    #[test]
    fn cluster_namespace_matches_fleet_local() {
        assert_eq!(key_hash("fleet-local::local"), "1a3d67d0a899");
        assert_eq!(
            cluster_namespace("fleet-local", "local"),
            "cluster-fleet-local-local-1a3d67d0a899"
        );
    }

    #[test]
    fn hex_lower_matches_go_hex_encoding() {
        assert_eq!(hex_lower(&[]), "");
        assert_eq!(hex_lower(&[0x00, 0x0f, 0xa0, 0xff, 0x7e]), "000fa0ff7e");
        let all: Vec<u8> = (0..=255).collect();
        let expected: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex_lower(&all), expected);
    }

    #[test]
    fn key_hash_uses_first_100_bytes() {
        let a = format!("{}{}", "k".repeat(100), "tail-a");
        let b = format!("{}{}", "k".repeat(100), "tail-b");
        assert_eq!(key_hash(&a), key_hash(&b));
        assert_eq!(key_hash(&a).len(), 12);
    }
}
