//! A TLS key and certificate as read from disk, and the pure checks on them: the first
//! certificate's public key is the private key's (ECDSA P-256, as upstream, or RSA), and the
//! digest the renewal watcher compares. No I/O.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, ObjectIdentifier, PrivateKeyInfo};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPublicKey};
use sha2::{Digest as _, Sha256};
use x509_cert::der::Decode;

/// `id-ecPublicKey` (RFC 5480).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `rsaEncryption` (RFC 8017).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The bytes of a key file and a certificate file (PEM), as read together.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TlsPair {
    /// The private key file.
    pub(crate) key: Vec<u8>,
    /// The certificate file: the server certificate first, then any chain.
    pub(crate) cert: Vec<u8>,
}

impl std::fmt::Debug for TlsPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never printed.
        write!(f, "TlsPair {{ digest: {:?} }}", self.digest())
    }
}

/// SHA-256 over both files: a change of either is a renewal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct PairDigest([u8; 32]);

impl std::fmt::Debug for PairDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Why a key and certificate cannot be given to postgres.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PairError {
    /// The certificate file holds no PEM `CERTIFICATE` block.
    #[error("the certificate file holds no PEM certificate")]
    NoCertificate,
    /// The first certificate is not valid DER X.509.
    #[error("the certificate cannot be decoded: {0}")]
    Certificate(String),
    /// The key file holds no PEM private key block.
    #[error("the key file holds no PEM private key")]
    NoKey,
    /// The key is encrypted: postgres would need a passphrase.
    #[error("the private key is encrypted (postgres would need a passphrase)")]
    EncryptedKey,
    /// The key cannot be decoded.
    #[error("the private key cannot be decoded: {0}")]
    Key(String),
    /// The key is of a type this build does not check.
    #[error("unsupported private key type {0} (ECDSA P-256 and RSA are supported)")]
    UnsupportedKey(String),
    /// The key is not the certificate's.
    #[error("the private key does not match the certificate")]
    Mismatch,
}

impl TlsPair {
    /// The digest of both files.
    pub(crate) fn digest(&self) -> PairDigest {
        let mut hasher = Sha256::new();
        hasher.update((self.key.len() as u64).to_le_bytes());
        hasher.update(&self.key);
        hasher.update(&self.cert);
        PairDigest(hasher.finalize().into())
    }

    /// Checks that the key is the private key of the first certificate, so that a key and a
    /// certificate caught half-way through a renewal are never installed.
    pub(crate) fn check(&self) -> Result<(), PairError> {
        let cert_key = certificate_public_key(&self.cert)?;
        if public_key_of(&self.key)? == cert_key {
            Ok(())
        } else {
            Err(PairError::Mismatch)
        }
    }
}

/// The subject public key (the BIT STRING's bytes) of the first certificate.
fn certificate_public_key(pem_text: &[u8]) -> Result<Vec<u8>, PairError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| PairError::Certificate(e.to_string()))?;
    let block = blocks
        .iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .ok_or(PairError::NoCertificate)?;
    let cert = x509_cert::Certificate::from_der(block.contents())
        .map_err(|e| PairError::Certificate(e.to_string()))?;
    Ok(cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes()
        .to_vec())
}

/// The public key of the first private key block, encoded as in a certificate: the
/// uncompressed SEC1 point for P-256, the PKCS#1 `RSAPublicKey` for RSA.
fn public_key_of(pem_text: &[u8]) -> Result<Vec<u8>, PairError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| PairError::Key(e.to_string()))?;
    let key_error = |e: &dyn std::fmt::Display| PairError::Key(e.to_string());
    for block in &blocks {
        let der = block.contents();
        match block.tag() {
            "EC PRIVATE KEY" => {
                let key = p256::SecretKey::from_sec1_der(der).map_err(|e| key_error(&e))?;
                return Ok(p256_point(&key));
            }
            "RSA PRIVATE KEY" => {
                let key = rsa::RsaPrivateKey::from_pkcs1_der(der).map_err(|e| key_error(&e))?;
                return rsa_public(&key);
            }
            "PRIVATE KEY" => return pkcs8_public_key(der),
            "ENCRYPTED PRIVATE KEY" => return Err(PairError::EncryptedKey),
            _ => {}
        }
    }
    Err(PairError::NoKey)
}

fn pkcs8_public_key(der: &[u8]) -> Result<Vec<u8>, PairError> {
    let key_error = |e: &dyn std::fmt::Display| PairError::Key(e.to_string());
    let info = PrivateKeyInfo::try_from(der).map_err(|e| key_error(&e))?;
    match info.algorithm.oid {
        EC_PUBLIC_KEY => {
            let key = p256::SecretKey::from_pkcs8_der(der)
                .map_err(|e| PairError::UnsupportedKey(format!("EC ({e}; not P-256?)")))?;
            Ok(p256_point(&key))
        }
        RSA_ENCRYPTION => {
            let key = rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|e| key_error(&e))?;
            rsa_public(&key)
        }
        other => Err(PairError::UnsupportedKey(other.to_string())),
    }
}

fn p256_point(key: &p256::SecretKey) -> Vec<u8> {
    key.public_key().to_encoded_point(false).as_bytes().to_vec()
}

fn rsa_public(key: &rsa::RsaPrivateKey) -> Result<Vec<u8>, PairError> {
    let public = key.to_public_key();
    let der = public
        .to_pkcs1_der()
        .map_err(|e| PairError::Key(e.to_string()))?;
    Ok(der.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn check(key: &[u8], cert: &[u8], expect: Result<(), PairError>) {
        let pair = TlsPair {
            key: key.to_vec(),
            cert: cert.to_vec(),
        };
        assert_eq!(pair.check(), expect);
    }

    #[test]
    fn keys_are_checked_against_the_certificate() {
        let p256 = fixture("p256.crt");
        let rsa = fixture("rsa.crt");
        check(&fixture("p256-pkcs8.key"), &p256, Ok(()));
        check(&fixture("p256-sec1.key"), &p256, Ok(()));
        check(&fixture("rsa-pkcs8.key"), &rsa, Ok(()));
        check(&fixture("rsa-pkcs1.key"), &rsa, Ok(()));
        // A chain: the first certificate is the server's.
        check(
            &fixture("p256-pkcs8.key"),
            &[p256.clone(), rsa.clone()].concat(),
            Ok(()),
        );

        check(&fixture("p256-other.key"), &p256, Err(PairError::Mismatch));
        check(&fixture("rsa-pkcs8.key"), &p256, Err(PairError::Mismatch));
        check(&fixture("p256-pkcs8.key"), &rsa, Err(PairError::Mismatch));
        check(
            &fixture("p256-encrypted.key"),
            &p256,
            Err(PairError::EncryptedKey),
        );
        check(
            &fixture("ed25519.key"),
            &fixture("ed25519.crt"),
            Err(PairError::UnsupportedKey("1.3.101.112".into())),
        );
        check(b"", &p256, Err(PairError::NoKey));
        check(
            &fixture("p256-pkcs8.key"),
            b"",
            Err(PairError::NoCertificate),
        );
        check(&p256, &p256, Err(PairError::NoKey));
        let garbage = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            TlsPair {
                key: garbage.to_vec(),
                cert: p256.clone()
            }
            .check(),
            Err(PairError::Key(_))
        ));
        let bad_cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            TlsPair {
                key: fixture("p256-pkcs8.key"),
                cert: bad_cert.to_vec()
            }
            .check(),
            Err(PairError::Certificate(_))
        ));
    }

    #[test]
    fn the_digest_covers_both_files_and_debug_hides_the_key() {
        let pair = TlsPair {
            key: fixture("p256-pkcs8.key"),
            cert: fixture("p256.crt"),
        };
        let mut other = pair.clone();
        assert_eq!(pair.digest(), other.digest());
        other.key = fixture("p256-other.key");
        assert_ne!(pair.digest(), other.digest());
        let mut moved = pair.clone();
        // The same bytes split differently between the files is another pair.
        moved.cert.insert(0, moved.key.pop().unwrap());
        assert_ne!(pair.digest(), moved.digest());
        let shown = format!("{pair:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }
}
