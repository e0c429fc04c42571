//! `OpenId`: a customer's id on one Official Account (`FromUserName` of a push, `touser` of a
//! send). WeChat's are 28 characters of `[A-Za-z0-9_-]` (`wechat-api.md` §2.1); the bridge takes
//! up to 64 of them, so an id from a forged or broken push never reaches the store or an API.

use std::fmt;

/// A validated OpenID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpenId(String);

/// Longest OpenID accepted: real ones are 28 characters.
pub const MAX_OPENID_LEN: usize = 64;

impl OpenId {
    /// Checks the shape: 1–64 ASCII letters, digits, `-` or `_`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > MAX_OPENID_LEN {
            return Err(format!("OpenID must be 1 to {MAX_OPENID_LEN} characters, got {}", s.len()));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err("OpenID may only hold letters, digits, '-' and '_'".into());
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OpenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_openids_pass_and_hostile_ones_do_not() {
        assert!(OpenId::parse("oUuf-aE_cBW-xbv7R-r2_2GTtg-H").is_ok());
        assert!(OpenId::parse("o_user_1").is_ok());
        for bad in ["", "o user", "o<script>", "ö123", &"o".repeat(65), "o\n1"] {
            assert!(OpenId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
