//! WhatsApp Flows' data-exchange encryption: the request's AES key unwrapped with the business's
//! RSA key (OAEP, SHA-256, MGF1-SHA-256), its body opened with AES-128-GCM under the 16-byte IV
//! Meta sends, and the answer sealed under the same key with every bit of the IV inverted.

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::aes::Aes128;
use aes_gcm::AesGcm;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{Oaep, RsaPrivateKey};
use serde::Deserialize;
use sha2::Sha256;

/// AES-128-GCM with the 16-byte nonce Flows use (not the usual 12).
type FlowCipher = AesGcm<Aes128, U16>;

/// Why a Flows request could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum FlowCryptoError {
    /// Not the envelope Meta sends (fields missing, not base64): the caller's mistake.
    #[error("not a Flows request: {0}")]
    Malformed(&'static str),
    /// Encrypted for another key, or tampered with: Meta re-fetches the public key (421).
    #[error("the request cannot be decrypted with this key")]
    Decrypt,
    #[error("the decrypted request is not JSON")]
    NotJson,
    #[error("the private key could not be read: {0}")]
    Key(String),
}

/// What Meta POSTs to the endpoint.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub encrypted_flow_data: String,
    pub encrypted_aes_key: String,
    pub initial_vector: String,
}

/// The business's Flows key pair (2048-bit RSA; the public half is uploaded to the number).
pub struct FlowKey(RsaPrivateKey);

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowKey(..)")
    }
}

impl FlowKey {
    /// A PEM private key, PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<FlowKey, FlowCryptoError> {
        RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map(FlowKey)
            .map_err(|e| FlowCryptoError::Key(e.to_string()))
    }

    /// A new 2048-bit key pair.
    pub fn generate() -> Result<FlowKey, FlowCryptoError> {
        RsaPrivateKey::new(&mut rand_core06::OsRng, 2048)
            .map(FlowKey)
            .map_err(|e| FlowCryptoError::Key(e.to_string()))
    }

    /// The private key as PKCS#8 PEM (a secret: written to a file of the operator's only).
    pub fn private_pem(&self) -> Result<secrecy::SecretString, FlowCryptoError> {
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| secrecy::SecretString::from(pem.as_str()))
            .map_err(|e| FlowCryptoError::Key(e.to_string()))
    }

    /// The public key as SPKI PEM (`BEGIN PUBLIC KEY`), what Meta takes as
    /// `business_public_key`.
    pub fn public_pem(&self) -> Result<String, FlowCryptoError> {
        self.0
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| FlowCryptoError::Key(e.to_string()))
    }
}

/// An opened request: its JSON and what its answer is sealed with.
pub struct Opened {
    pub request: serde_json::Value,
    key: [u8; 16],
    iv: [u8; 16],
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").finish_non_exhaustive()
    }
}

fn base64(field: &'static str, value: &str) -> Result<Vec<u8>, FlowCryptoError> {
    B64.decode(value.trim())
        .map_err(|_| FlowCryptoError::Malformed(field))
}

/// Opens a request with `key`.
pub fn open(key: &FlowKey, envelope: &Envelope) -> Result<Opened, FlowCryptoError> {
    let wrapped = base64(
        "encrypted_aes_key is not base64",
        &envelope.encrypted_aes_key,
    )?;
    let data = base64(
        "encrypted_flow_data is not base64",
        &envelope.encrypted_flow_data,
    )?;
    let iv: [u8; 16] = base64("initial_vector is not base64", &envelope.initial_vector)?
        .try_into()
        .map_err(|_| FlowCryptoError::Malformed("initial_vector is not 16 bytes"))?;
    // Blinded: the time the decryption takes does not depend on the key's bits.
    let aes_key: [u8; 16] = key
        .0
        .decrypt_blinded(&mut rand_core06::OsRng, Oaep::new::<Sha256>(), &wrapped)
        .map_err(|_| FlowCryptoError::Decrypt)?
        .try_into()
        .map_err(|_| FlowCryptoError::Decrypt)?;
    let cipher = FlowCipher::new(&aes_key.into());
    let plain = cipher
        .decrypt(&iv.into(), data.as_slice())
        .map_err(|_| FlowCryptoError::Decrypt)?;
    let request = serde_json::from_slice(&plain).map_err(|_| FlowCryptoError::NotJson)?;
    Ok(Opened {
        request,
        key: aes_key,
        iv,
    })
}

impl Opened {
    /// `answer` sealed for Meta: AES-128-GCM under the request's key and its IV with every bit
    /// inverted, the tag appended, base64 (the body of a `text/plain` answer).
    pub fn seal(&self, answer: &serde_json::Value) -> String {
        let iv: [u8; 16] = self.iv.map(|b| !b);
        let cipher = FlowCipher::new(&self.key.into());
        let body = answer.to_string();
        // Encryption under a valid key and nonce cannot fail for a body this size.
        let sealed = cipher
            .encrypt(&iv.into(), body.as_bytes())
            .unwrap_or_default();
        B64.encode(sealed)
    }

    /// The request's `action`: `ping`, `INIT`, `BACK`, `data_exchange`.
    pub fn action(&self) -> &str {
        self.request["action"].as_str().unwrap_or_default()
    }

    /// A request that reports an error of the flow on the user's phone (`data.error`).
    pub fn is_error_report(&self) -> bool {
        self.request["data"].get("error").is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_sealed_for_our_key_opens_and_its_answer_uses_the_inverted_iv() {
        let key = FlowKey::generate().expect("key");
        let public = key.0.to_public_key();
        let aes_key = [7u8; 16];
        let iv = [0x5au8; 16];
        let body = serde_json::json!({"version": "3.0", "action": "ping"}).to_string();
        let data = FlowCipher::new(&aes_key.into())
            .encrypt(&iv.into(), body.as_bytes())
            .expect("sealed");
        let wrapped = public
            .encrypt(&mut rand_core06::OsRng, Oaep::new::<Sha256>(), &aes_key)
            .expect("wrapped");
        let envelope = Envelope {
            encrypted_flow_data: B64.encode(&data),
            encrypted_aes_key: B64.encode(&wrapped),
            initial_vector: B64.encode(iv),
        };
        let opened = open(&key, &envelope).expect("opens");
        assert_eq!(opened.action(), "ping");
        let answer = serde_json::json!({"data": {"status": "active"}});
        let sealed = B64.decode(opened.seal(&answer)).expect("base64");
        let plain = FlowCipher::new(&aes_key.into())
            .decrypt(&iv.map(|b| !b).into(), sealed.as_slice())
            .expect("opens with the inverted IV");
        assert_eq!(plain, answer.to_string().as_bytes());
        // Tampered: refused, never a panic.
        let mut bad = data.clone();
        bad[0] ^= 1;
        let tampered = Envelope {
            encrypted_flow_data: B64.encode(&bad),
            ..envelope
        };
        assert!(matches!(
            open(&key, &tampered),
            Err(FlowCryptoError::Decrypt)
        ));
        // The key round-trips through PEM.
        let pem = key.private_pem().expect("pem");
        use secrecy::ExposeSecret;
        assert!(FlowKey::from_pem(pem.expose_secret()).is_ok());
        assert!(key
            .public_pem()
            .expect("public")
            .starts_with("-----BEGIN PUBLIC KEY-----"));
    }
}
