//! Throw-away RSA key pairs for the simulators, the demo and the tests.
//!
//! A Vonage application owns an RSA key pair: the private key (the dashboard's
//! `private.key`, PKCS#8 PEM) signs the RS256 application JWTs, and Vonage keeps the
//! public key to verify them (`vonage-api.md §1`). The built-in Vonage simulator needs
//! the same pair, so `demo` and the tests mint a fresh one at start-up instead of
//! shipping a key in the repository.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;

/// Generates a fresh RSA-2048 key pair.
///
/// Returns `(private_pem, public_pem)`:
/// - `private_pem` is PKCS#8 (`-----BEGIN PRIVATE KEY-----`), the format the Vonage
///   dashboard hands out and the one `jsonwebtoken::EncodingKey::from_rsa_pem` reads;
/// - `public_pem` is X.509 SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), the
///   format of `keys.public_key` in the Application API and the one
///   `jsonwebtoken::DecodingKey::from_rsa_pem` reads.
///
/// # Panics
/// Only if the crypto library cannot generate or serialise a key, which means the
/// process cannot do RSA at all.
pub fn generate_rsa_keypair() -> (String, String) {
    let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA-2048 key generation failed");
    let private_der: Pkcs8V1Der<'static> = pair.as_der().expect("PKCS#8 serialisation failed");
    let public_der: PublicKeyX509Der<'static> = pair.public_key().as_der().expect("SubjectPublicKeyInfo serialisation failed");
    (pem_encode("PRIVATE KEY", private_der.as_ref()), pem_encode("PUBLIC KEY", public_der.as_ref()))
}

/// Wraps DER bytes in a PEM block with the standard 64-character base64 lines (RFC 7468).
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so any byte split is a char split.
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

    #[test]
    fn pem_shape() {
        let (private_pem, public_pem) = generate_rsa_keypair();
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(private_pem.ends_with("-----END PRIVATE KEY-----\n"));
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(public_pem.ends_with("-----END PUBLIC KEY-----\n"));
        for pem in [&private_pem, &public_pem] {
            let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let (last, full) = body.split_last().unwrap();
            assert!(full.iter().all(|l| l.len() == 64));
            assert!(!last.is_empty() && last.len() <= 64);
        }
    }

    #[test]
    fn private_key_signs_rs256_and_public_key_verifies() {
        let (private_pem, public_pem) = generate_rsa_keypair();
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({
            "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
            "iat": now, "jti": "j-1", "exp": now + 900,
        });
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
        )
        .unwrap();
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap(),
            &Validation::new(Algorithm::RS256),
        )
        .unwrap();
        assert_eq!(data.claims["jti"], "j-1");

        // A different key pair must not verify it.
        let (_, other_public) = generate_rsa_keypair();
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(
                &token,
                &DecodingKey::from_rsa_pem(other_public.as_bytes()).unwrap(),
                &Validation::new(Algorithm::RS256),
            )
            .is_err()
        );
    }
}
