//! JWT authorization of the external HTTP API, as upstream: `Authorization: Bearer <jwt>`
//! verified against the config's JWK set (EdDSA/Ed25519 or RS256 keys); 400 when the header
//! is missing or malformed, 401 when no key verifies it (or an admin token lacks the
//! `compute` audience), 403 when a non-admin token names another compute. An empty key set
//! verifies nothing, so every token is refused (401), as upstream.
//!
//! Time claims, where present, are checked with [`CLOCK_LEEWAY`] of slack: `exp` (expired) and,
//! unlike upstream, `nbf` (not yet valid). Neither claim is required.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The admin scope: may act on any compute (requires audience `compute`).
pub(crate) const ADMIN_SCOPE: &str = "compute_ctl:admin";

/// The clock skew allowed on `exp` and `nbf`: 5 s. Tokens are minted by the control plane on
/// NTP-synchronised hosts, so their clocks differ by milliseconds; 5 s covers a slow request
/// and a stepping clock, while a token that expired a minute ago (jsonwebtoken's default
/// leeway is 60 s) is refused.
pub(crate) const CLOCK_LEEWAY: std::time::Duration = std::time::Duration::from_secs(5);

/// A refused request. The messages are upstream's, word for word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum AuthError {
    /// No `Authorization: Bearer` header, or not a JWT.
    #[error("invalid authorization token")]
    Malformed,
    /// No key verified the token (signature, algorithm, expiry, claims), or there is no key.
    #[error("failed to verify authorization token")]
    Unverified {
        /// Why the last key refused it (logged, not answered).
        reason: String,
    },
    /// An admin token without an audience.
    #[error("missing audience in authorization token claims")]
    MissingAudience,
    /// An admin token whose audience lacks `compute`.
    #[error("invalid audience in authorization token claims")]
    InvalidAudience,
    /// A compute token without `compute_id`.
    #[error("missing compute_id in authorization token claims")]
    MissingComputeId,
    /// The token is for another compute.
    #[error("invalid compute ID in authorization token claims")]
    WrongCompute {
        /// The `compute_id` claim.
        claimed: String,
    },
}

impl AuthError {
    /// The HTTP status for this refusal.
    pub(crate) fn status(&self) -> u16 {
        match self {
            AuthError::Malformed => 400,
            AuthError::Unverified { .. }
            | AuthError::MissingAudience
            | AuthError::InvalidAudience => 401,
            AuthError::MissingComputeId | AuthError::WrongCompute { .. } => 403,
        }
    }
}

/// A JWK that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("jwks key {index}: {reason}")]
pub(crate) struct BadKey {
    /// Index in `keys`.
    pub(crate) index: usize,
    /// What is wrong.
    pub(crate) reason: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    compute_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, want: &str) -> bool {
        match self {
            Audience::One(a) => a == want,
            Audience::Many(all) => all.iter().any(|a| a == want),
        }
    }
}

/// Verifies tokens for one compute.
#[derive(Clone)]
pub(crate) struct Authenticator {
    keys: Vec<(DecodingKey, Algorithm)>,
    compute_id: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys.len())
            .field("compute_id", &self.compute_id)
            .finish()
    }
}

impl Authenticator {
    /// An authenticator with no keys: every token is refused.
    pub(crate) fn refusing_all() -> Authenticator {
        Authenticator {
            keys: Vec::new(),
            compute_id: None,
        }
    }

    /// Whether any key can verify a token.
    pub(crate) fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// From the config's JWK set (an empty set refuses every token).
    pub(crate) fn from_jwks(
        jwks: &compute_spec::JwkSet,
        compute_id: Option<String>,
    ) -> Result<Authenticator, BadKey> {
        let mut keys = Vec::new();
        for (index, key) in jwks.keys.iter().enumerate() {
            let bad = |reason: String| BadKey { index, reason };
            let jwk: Jwk = serde_json::from_value(serde_json::Value::Object(key.clone()))
                .map_err(|e| bad(e.to_string()))?;
            let algorithm = match key.get("kty").and_then(|v| v.as_str()) {
                Some("OKP") => Algorithm::EdDSA,
                Some("RSA") => {
                    rsa_modulus_bits(key)
                        .filter(|bits| *bits >= MIN_RSA_BITS)
                        .ok_or_else(|| {
                            bad(format!(
                                "RSA key modulus is shorter than {MIN_RSA_BITS} bits (or unreadable)"
                            ))
                        })?;
                    Algorithm::RS256
                }
                other => {
                    return Err(bad(format!(
                        "unsupported key type {other:?} (OKP/Ed25519 or RSA)"
                    )));
                }
            };
            let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| bad(e.to_string()))?;
            keys.push((decoding, algorithm));
        }
        Ok(Authenticator { keys, compute_id })
    }

    /// Checks the `Authorization` header value.
    pub(crate) fn authorize(&self, header: Option<&str>) -> Result<(), AuthError> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Malformed)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        // RFC 7515 §4.1.11: a token whose `crit` names extensions the recipient does not
        // understand is invalid; this one understands none.
        if let Some(crit) = &header.crit {
            return Err(AuthError::Unverified {
                reason: format!("critical header parameters not understood: {crit:?}"),
            });
        }
        let mut last_error = String::from("no key matches the token's algorithm");
        let mut claims = None;
        for (key, algorithm) in &self.keys {
            if *algorithm != header.alg {
                continue;
            }
            let mut validation = Validation::new(*algorithm);
            validation.required_spec_claims.clear();
            validation.validate_aud = false;
            validation.validate_nbf = true;
            validation.leeway = CLOCK_LEEWAY.as_secs();
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        let claims = claims.ok_or(AuthError::Unverified { reason: last_error })?;
        if claims.scope.as_deref() == Some(ADMIN_SCOPE) {
            return match &claims.aud {
                None => Err(AuthError::MissingAudience),
                Some(aud) if aud.contains("compute") => Ok(()),
                Some(_) => Err(AuthError::InvalidAudience),
            };
        }
        match (claims.compute_id, &self.compute_id) {
            (None, _) => Err(AuthError::MissingComputeId),
            (Some(claimed), Some(ours)) if claimed == *ours => Ok(()),
            (Some(claimed), _) => Err(AuthError::WrongCompute { claimed }),
        }
    }
}

/// The shortest RSA modulus accepted in a JWK: NIST's floor for RS256 (a 17-bit key was
/// accepted before, and anyone can factor it).
const MIN_RSA_BITS: usize = 2048;

/// The bit length of an RSA JWK's modulus (`n`, base64url without padding), if readable.
fn rsa_modulus_bits(key: &serde_json::Map<String, serde_json::Value>) -> Option<usize> {
    use base64::Engine as _;
    let n = key.get("n")?.as_str()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n.trim_end_matches('='))
        .ok()?;
    let first = bytes.iter().position(|b| *b != 0)?;
    Some((bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};

    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn token(alg: Algorithm, pem: &str, claims: serde_json::Value) -> String {
        let key = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(fixture(pem).as_bytes()).unwrap(),
            _ => EncodingKey::from_rsa_pem(fixture(pem).as_bytes()).unwrap(),
        };
        encode(&Header::new(alg), &claims, &key).unwrap()
    }

    fn check(auth: &Authenticator, header: Option<String>, expect: u16) {
        let got = match auth.authorize(header.as_deref()) {
            Ok(()) => 200,
            Err(e) => e.status(),
        };
        assert_eq!(got, expect, "{header:?}");
    }

    fn refusal(auth: &Authenticator, header: Option<String>) -> String {
        auth.authorize(header.as_deref()).unwrap_err().to_string()
    }

    #[test]
    fn a_critical_header_extension_is_refused() {
        let jwks: compute_spec::JwkSet = serde_json::from_str(&fixture("jwks.json")).unwrap();
        let auth = Authenticator::from_jwks(&jwks, Some("c1".into())).unwrap();
        let key = EncodingKey::from_ed_pem(fixture("ed25519.pem").as_bytes()).unwrap();
        let claims = serde_json::json!({"compute_id": "c1"});
        let mut header = Header::new(Algorithm::EdDSA);
        check(
            &auth,
            Some(format!(
                "Bearer {}",
                encode(&header, &claims, &key).unwrap()
            )),
            200,
        );
        header.crit = Some(vec!["b64".into()]);
        let token = encode(&header, &claims, &key).unwrap();
        check(&auth, Some(format!("Bearer {token}")), 401);
    }

    /// `exp` and `nbf` are checked with [`CLOCK_LEEWAY`] of slack either side, and nothing
    /// more.
    #[test]
    fn time_claims_are_checked_with_a_small_leeway() {
        let jwks: compute_spec::JwkSet = serde_json::from_str(&fixture("jwks.json")).unwrap();
        let auth = Authenticator::from_jwks(&jwks, Some("c1".into())).unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let leeway = CLOCK_LEEWAY.as_secs();
        for (claims, expect) in [
            // Valid only in an hour.
            (
                serde_json::json!({"compute_id": "c1", "nbf": now + 3600}),
                401,
            ),
            (
                serde_json::json!({"compute_id": "c1", "nbf": now + leeway + 30}),
                401,
            ),
            (serde_json::json!({"compute_id": "c1", "nbf": now - 1}), 200),
            // Inside the leeway: a clock a second or two ahead of ours.
            (serde_json::json!({"compute_id": "c1", "nbf": now + 2}), 200),
            // Just past its expiry, beyond the leeway (jsonwebtoken's default would accept it).
            (
                serde_json::json!({"compute_id": "c1", "exp": now - leeway - 10}),
                401,
            ),
            (serde_json::json!({"compute_id": "c1", "exp": now - 2}), 200),
            (
                serde_json::json!({"compute_id": "c1", "exp": now + 60}),
                200,
            ),
            (
                serde_json::json!({"compute_id": "c1", "nbf": now - 60, "exp": now + 60}),
                200,
            ),
        ] {
            let signed = token(Algorithm::EdDSA, "ed25519.pem", claims.clone());
            let got = match auth.authorize(Some(&format!("Bearer {signed}"))) {
                Ok(()) => 200,
                Err(e) => e.status(),
            };
            assert_eq!(got, expect, "{claims}");
        }
    }

    #[test]
    fn short_rsa_keys_are_refused() {
        let jwks: compute_spec::JwkSet = serde_json::from_str(&fixture("jwks.json")).unwrap();
        let rsa = jwks
            .keys
            .iter()
            .find(|k| k.get("kty").and_then(|v| v.as_str()) == Some("RSA"))
            .unwrap();
        assert!(rsa_modulus_bits(rsa).unwrap() >= MIN_RSA_BITS);
        // A 17-bit modulus (0x1_0001, base64url "AQAB") and an unreadable one.
        for n in ["AQAB", "!!"] {
            let mut short = rsa.clone();
            short.insert("n".into(), serde_json::json!(n));
            let set = compute_spec::JwkSet { keys: vec![short] };
            let error = Authenticator::from_jwks(&set, None).unwrap_err();
            assert!(
                error.to_string().contains("shorter than 2048 bits"),
                "{error}"
            );
        }
    }

    #[test]
    fn tokens_are_accepted_rejected_and_scoped() {
        let jwks: compute_spec::JwkSet = serde_json::from_str(&fixture("jwks.json")).unwrap();
        let auth = Authenticator::from_jwks(&jwks, Some("c1".into())).unwrap();
        let bearer = |t: String| Some(format!("Bearer {t}"));
        let ed = |claims| bearer(token(Algorithm::EdDSA, "ed25519.pem", claims));
        check(&auth, ed(serde_json::json!({"compute_id": "c1"})), 200);
        check(
            &auth,
            bearer(token(
                Algorithm::RS256,
                "rsa.pem",
                serde_json::json!({"compute_id": "c1"}),
            )),
            200,
        );
        check(&auth, ed(serde_json::json!({"compute_id": "c2"})), 403);
        check(&auth, ed(serde_json::json!({})), 403);
        check(
            &auth,
            ed(serde_json::json!({"scope": ADMIN_SCOPE, "aud": ["compute"]})),
            200,
        );
        check(
            &auth,
            ed(serde_json::json!({"scope": ADMIN_SCOPE, "aud": "compute"})),
            200,
        );
        check(&auth, ed(serde_json::json!({"scope": ADMIN_SCOPE})), 401);
        check(
            &auth,
            ed(serde_json::json!({"compute_id": "c1", "exp": 1000})),
            401,
        );
        check(
            &auth,
            bearer(token(
                Algorithm::EdDSA,
                "ed25519-other.pem",
                serde_json::json!({"compute_id": "c1"}),
            )),
            401,
        );
        check(&auth, None, 400);
        check(&auth, Some("Basic abc".into()), 400);
        check(&auth, Some("Bearer not-a-jwt".into()), 400);

        // Upstream's messages, word for word.
        for (claims, message) in [
            (
                serde_json::json!({"compute_id": "c2"}),
                "invalid compute ID in authorization token claims",
            ),
            (
                serde_json::json!({}),
                "missing compute_id in authorization token claims",
            ),
            (
                serde_json::json!({"scope": ADMIN_SCOPE}),
                "missing audience in authorization token claims",
            ),
            (
                serde_json::json!({"scope": ADMIN_SCOPE, "aud": ["invalid"]}),
                "invalid audience in authorization token claims",
            ),
            (
                serde_json::json!({"compute_id": "c1", "exp": 1000}),
                "failed to verify authorization token",
            ),
        ] {
            assert_eq!(refusal(&auth, ed(claims.clone())), message, "{claims}");
        }
        assert_eq!(refusal(&auth, None), "invalid authorization token");
    }

    #[test]
    fn empty_jwks_refuses_every_token_and_bad_keys_are_located() {
        let empty =
            Authenticator::from_jwks(&compute_spec::JwkSet::default(), Some("c1".into())).unwrap();
        assert!(!empty.has_keys());
        let signed = token(
            Algorithm::EdDSA,
            "ed25519.pem",
            serde_json::json!({"compute_id": "c1"}),
        );
        check(&empty, Some(format!("Bearer {signed}")), 401);
        check(&empty, None, 400);
        let jwks: compute_spec::JwkSet =
            serde_json::from_str(r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}"#)
                .unwrap();
        let err = Authenticator::from_jwks(&jwks, None).unwrap_err();
        assert!(err.to_string().starts_with("jwks key 0:"), "{err}");
    }
}
