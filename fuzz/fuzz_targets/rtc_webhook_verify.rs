//! `vonage::webhook::verify_signature` on arbitrary `Authorization` headers, bodies, secrets and
//! clocks. Half the inputs carry a token correctly HMAC-signed over fuzzed header and claims
//! bytes, so the fuzzer reaches the claims, `iat` and `payload_hash` checks, not only the
//! signature check.
#![no_main]

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wechat_bridge::vonage::webhook::verify_signature;

#[derive(Debug)]
struct Case {
    authorization: Option<String>,
    body: Vec<u8>,
    secret: String,
    now: u64,
}

impl<'a> Arbitrary<'a> for Case {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        case(u)
    }
}

fn case(u: &mut Unstructured<'_>) -> Result<Case> {
    let signed: bool = u.arbitrary()?;
    let secret: &str = u.arbitrary()?;
    let now: u64 = u.arbitrary()?;
    let body: &[u8] = u.arbitrary()?;
    let authorization = if signed {
        let header: &str = u.arbitrary()?;
        let header = if u.arbitrary()? { r#"{"alg":"HS256","typ":"JWT"}"# } else { header };
        let claims: &str = u.arbitrary()?;
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), input.as_bytes());
        let scheme = if u.arbitrary()? { "Bearer " } else { "bearer " };
        Some(format!("{scheme}{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())))
    } else {
        u.arbitrary::<Option<&str>>()?.map(str::to_owned)
    };
    Ok(Case { authorization, body: body.to_vec(), secret: secret.to_owned(), now })
}

fuzz_target!(|case: Case| {
    let _ = verify_signature(case.authorization.as_deref(), &case.body, &case.secret, case.now);
});
