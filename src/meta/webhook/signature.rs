//! `X-Hub-Signature-256` verification over the raw request bytes, in constant time, against
//! every configured app secret (rotation). Only this module can make a [`VerifiedBody`].

use bytes::Bytes;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header Meta signs every delivery with.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
/// What wabot signs its own calls with (events, the http backend, tools, Flows data exchange):
/// the same `sha256=<HMAC-SHA256 of the raw body>` as Meta's, made by [`sign`].
pub const WABOT_SIGNATURE_HEADER: &str = "X-Wabot-Signature-256";

/// A request body whose signature matched one of our app secrets. The parser only takes this.
#[derive(Debug, Clone)]
pub struct VerifiedBody(Bytes);

impl VerifiedBody {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Unit tests and the fuzzer feed the parser directly; production code cannot.
    #[cfg(any(test, fuzzing))]
    pub fn trusted(bytes: impl Into<Bytes>) -> VerifiedBody {
        VerifiedBody(bytes.into())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not `sha256=<64 hex digits>`")]
    Malformed,
    #[error("the X-Hub-Signature-256 header does not match any configured app secret")]
    Mismatch,
}

/// Holds the app secrets; cheap to clone.
#[derive(Clone)]
pub struct SignatureVerifier {
    secrets: std::sync::Arc<Vec<SecretString>>,
}

impl std::fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignatureVerifier({} secrets)", self.secrets.len())
    }
}

impl SignatureVerifier {
    pub fn new(secrets: Vec<SecretString>) -> SignatureVerifier {
        SignatureVerifier {
            secrets: std::sync::Arc::new(secrets),
        }
    }

    /// Checks `header` (the value of `X-Hub-Signature-256`) against `body`, exactly as received.
    pub fn verify(
        &self,
        header: Option<&[u8]>,
        body: Bytes,
    ) -> Result<VerifiedBody, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let hex_digest = header
            .strip_prefix(b"sha256=")
            .ok_or(SignatureError::Malformed)?;
        let expected =
            hex::decode(hex_digest.trim_ascii()).map_err(|_| SignatureError::Malformed)?;
        if expected.len() != 32 {
            return Err(SignatureError::Malformed);
        }
        // Every secret is tried even after a match would be found, so timing does not reveal
        // which secret (old or new) signed the payload.
        let mut matched = false;
        for secret in self.secrets.iter() {
            let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
                .expect("HMAC accepts keys of any length");
            mac.update(&body);
            matched |= mac.verify_slice(&expected).is_ok();
        }
        if matched {
            Ok(VerifiedBody(body))
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// `sha256=<hex>` for `body` under `secret`: what Meta would send. Used by tests, the sandbox
/// and the benchmark.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &[u8] =
        include_bytes!("../../../tests/fixtures/signature/raw_body_escaped.json");
    const FIXTURE_SECRET: &str = "test_app_secret_0123456789abcdef";
    const FIXTURE_SIG: &str =
        "sha256=4bfbcbf5f62eb0be72eacaa032400e43e43099b4ac9299aea6e79714a551f4fe";
    const RESERIALIZED_SIG: &str =
        "sha256=5df6c64d2ddb796c7f65e18fc0a1325b1b061027ae4c81187340b86146d38dd3";

    fn verifier(secrets: &[&str]) -> SignatureVerifier {
        SignatureVerifier::new(secrets.iter().map(|s| SecretString::from(*s)).collect())
    }

    #[test]
    fn escaped_unicode_vector_verifies_over_raw_bytes() {
        let v = verifier(&[FIXTURE_SECRET]);
        assert!(v
            .verify(Some(FIXTURE_SIG.as_bytes()), Bytes::from_static(FIXTURE))
            .is_ok());
        assert_eq!(sign(FIXTURE_SECRET, FIXTURE), FIXTURE_SIG);
    }

    #[test]
    fn reserialized_twin_fails() {
        let v = verifier(&[FIXTURE_SECRET]);
        assert_eq!(
            v.verify(
                Some(RESERIALIZED_SIG.as_bytes()),
                Bytes::from_static(FIXTURE)
            )
            .unwrap_err(),
            SignatureError::Mismatch
        );
        // And hashing a re-serialized copy really gives the twin, so the fixture is what we think.
        let value: serde_json::Value = serde_json::from_slice(FIXTURE).expect("json");
        let reserialized = serde_json::to_vec(&value).expect("json");
        assert_ne!(sign(FIXTURE_SECRET, &reserialized), FIXTURE_SIG);
    }

    #[test]
    fn missing_malformed_and_wrong() {
        let v = verifier(&["k"]);
        let body = Bytes::from_static(b"{}");
        assert_eq!(
            v.verify(None, body.clone()).unwrap_err(),
            SignatureError::Missing
        );
        let good = sign("k", b"{}");
        let no_prefix = good.trim_start_matches("sha256=");
        assert_eq!(
            v.verify(Some(no_prefix.as_bytes()), body.clone())
                .unwrap_err(),
            SignatureError::Malformed
        );
        let sha1 = good.replace("sha256=", "sha1=");
        assert_eq!(
            v.verify(Some(sha1.as_bytes()), body.clone()).unwrap_err(),
            SignatureError::Malformed
        );
        assert_eq!(
            v.verify(Some(b"sha256=zz"), body.clone()).unwrap_err(),
            SignatureError::Malformed
        );
        let other = sign("other", b"{}");
        assert_eq!(
            v.verify(Some(other.as_bytes()), body.clone()).unwrap_err(),
            SignatureError::Mismatch
        );
        assert!(v.verify(Some(good.as_bytes()), body).is_ok());
    }

    #[test]
    fn any_configured_secret_verifies() {
        let v = verifier(&["old", "new"]);
        for secret in ["old", "new"] {
            let sig = sign(secret, b"payload");
            assert!(v
                .verify(Some(sig.as_bytes()), Bytes::from_static(b"payload"))
                .is_ok());
        }
        let sig = sign("retired", b"payload");
        assert!(v
            .verify(Some(sig.as_bytes()), Bytes::from_static(b"payload"))
            .is_err());
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let v = verifier(&["k"]);
        let sig = sign("k", b"x").to_uppercase().replace("SHA256=", "sha256=");
        assert!(v
            .verify(Some(sig.as_bytes()), Bytes::from_static(b"x"))
            .is_ok());
    }
}
