//! Stream tickets: short-lived credentials for the console's live stream.
//!
//! A browser's `EventSource` cannot send an `Authorization` header, and a token in a URL ends up
//! in proxy and access logs. So the console trades its bearer token for a ticket valid 60 s,
//! `<expiry>.<hex HMAC-SHA256(admin token, "stream:" + expiry)>`, and opens the stream with
//! `?ticket=`. Nothing is stored: the admin token is the key, the expiry is signed.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How long a ticket opens the stream.
pub const TICKET_TTL_SECS: u64 = 60;

/// Why a ticket was refused (never says more to the client than 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("malformed ticket")]
    Malformed,
    #[error("ticket expired")]
    Expired,
    /// Only the bridge mints tickets, and never for longer than the TTL.
    #[error("ticket valid for longer than {TICKET_TTL_SECS} s")]
    TooLong,
    #[error("bad ticket signature")]
    BadSignature,
}

fn mac(token: &str, expiry: u64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("stream:{expiry}").as_bytes());
    mac
}

/// A ticket valid until `now + TICKET_TTL_SECS` (Unix seconds).
pub fn issue(token: &str, now: u64) -> String {
    let expiry = now + TICKET_TTL_SECS;
    format!("{expiry}.{}", hex::encode(mac(token, expiry).finalize().into_bytes()))
}

/// Checks a ticket's signature (in constant time) and its expiry against `now`.
pub fn verify(token: &str, ticket: &str, now: u64) -> Result<(), TicketError> {
    let (expiry, signature) = ticket.split_once('.').ok_or(TicketError::Malformed)?;
    let expiry: u64 = expiry.parse().map_err(|_| TicketError::Malformed)?;
    let signature = hex::decode(signature).map_err(|_| TicketError::Malformed)?;
    mac(token, expiry).verify_slice(&signature).map_err(|_| TicketError::BadSignature)?;
    if expiry <= now {
        return Err(TicketError::Expired);
    }
    if expiry > now + TICKET_TTL_SECS {
        return Err(TicketError::TooLong);
    }
    Ok(())
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_ticket_verifies_until_it_expires() {
        let ticket = issue("t/o+k=en", 1_000);
        assert_eq!(verify("t/o+k=en", &ticket, 1_000), Ok(()));
        assert_eq!(verify("t/o+k=en", &ticket, 1_059), Ok(()));
        assert_eq!(verify("t/o+k=en", &ticket, 1_060), Err(TicketError::Expired));
        assert_eq!(verify("other", &ticket, 1_000), Err(TicketError::BadSignature));
        assert_eq!(verify("t/o+k=en", "1060.zz", 1_000), Err(TicketError::Malformed));
    }
}
