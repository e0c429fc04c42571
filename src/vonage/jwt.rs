//! RS256 application JWTs for the Vonage API (`vonage-api.md` §1).
//!
//! Claims: `application_id`, `iat`, `exp`, `jti` and an `acl` covering users and conversations.
//! A token is reused until shortly before it expires, so a busy bridge signs about one token per
//! ttl instead of one per request.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// Lifetime of a minted token: 15 minutes, the SDKs' default (§1.2; the API allows 30 s to 24 h).
const TTL: Duration = Duration::from_secs(900);
/// A cached token is replaced when less than this is left, so no request carries a nearly dead one.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("not an RSA private key in PEM form (PKCS#8 or PKCS#1): {0}")]
    Key(String),
    #[error("cannot sign JWT: {0}")]
    Sign(String),
}

#[derive(Serialize)]
struct Claims<'a> {
    application_id: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    acl: serde_json::Value,
}

/// Signs and caches application JWTs.
pub struct JwtMinter {
    application_id: String,
    key: EncodingKey,
    cached: Mutex<Option<(String, SystemTime)>>,
}

impl std::fmt::Debug for JwtMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtMinter").field("application_id", &self.application_id).finish_non_exhaustive()
    }
}

impl JwtMinter {
    /// Parses the key once; a bad key is a configuration error reported at start.
    pub fn new(application_id: &str, private_key_pem: &str) -> Result<Self, JwtError> {
        let key = EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).map_err(|e| JwtError::Key(e.to_string()))?;
        let minter = Self { application_id: application_id.to_string(), key, cached: Mutex::new(None) };
        // Sign once now: a key that parses but cannot sign should fail at start, not on a message.
        minter.mint(SystemTime::now())?;
        Ok(minter)
    }

    /// A valid token, reused while more than a minute of its life is left.
    pub fn token(&self) -> Result<String, JwtError> {
        let now = SystemTime::now();
        let mut cached = self.cached.lock().expect("jwt cache poisoned");
        if let Some((token, expires)) = cached.as_ref()
            && *expires > now + REFRESH_MARGIN
        {
            return Ok(token.clone());
        }
        let token = self.mint(now)?;
        *cached = Some((token.clone(), now + TTL));
        Ok(token)
    }

    /// Drops the cached token, after Vonage answered 401 to it.
    pub fn invalidate(&self) {
        *self.cached.lock().expect("jwt cache poisoned") = None;
    }

    fn mint(&self, now: SystemTime) -> Result<String, JwtError> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims {
            application_id: &self.application_id,
            iat,
            nbf: iat,
            exp: iat + TTL.as_secs(),
            jti: uuid::Uuid::new_v4().to_string(),
            // Backend calls need no ACL, but community backends send one and it costs nothing (§1.1).
            acl: serde_json::json!({"paths": {"/*/users/**": {}, "/*/conversations/**": {}, "/*/sessions/**": {}}}),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key).map_err(|e| JwtError::Sign(e.to_string()))
    }
}
