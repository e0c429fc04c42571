//! The WeChat push readers on arbitrary bytes (as a string): `xml::parse_fields`,
//! `message::parse`, `message::parse_encrypted_envelope` must return, never panic. A push that
//! parses must also go through what the relay does next: JSON storage and `to_inbound`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat_bridge::wechat::{inbound, message, xml};

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let _ = xml::parse_fields(&input);
    let _ = message::parse_encrypted_envelope(&input);
    if let Ok(push) = message::parse(&input) {
        let json = serde_json::to_string(&push).expect("a parsed push serializes");
        let back: message::Push = serde_json::from_str(&json).expect("a stored push reads back");
        assert_eq!(back.dedup_key(), push.dedup_key());
        let _ = inbound::to_inbound(&push);
    }
});
