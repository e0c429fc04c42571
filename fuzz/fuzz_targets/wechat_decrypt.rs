//! `MessageCrypto::decrypt` (and `decrypt_raw`) with a fixed key on arbitrary input.
//!
//! The first byte picks how the rest is used:
//! * even: as the `Encrypt` text itself, and as the base64 of a ciphertext;
//! * odd: as a *plaintext*, encrypted here with AES-256-CBC under the same key and IV (no
//!   padding added), so the fuzzer controls what the decrypter sees after AES: the PKCS#7
//!   pad (block 32), the big-endian message length, UTF-8 and the receive id (§3.3). Random
//!   ciphertexts almost never get past the padding check.
#![no_main]

use std::sync::OnceLock;

use aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
use libfuzzer_sys::fuzz_target;
use wechat_bridge::wechat::crypto::MessageCrypto;

/// 43 × 'A' decodes to 32 zero bytes: key and IV (the key's first 16 bytes) are all zeros.
const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const APP_ID: &str = "wxba5fad812f8e6fb9";

fn crypto() -> &'static MessageCrypto {
    static CRYPTO: OnceLock<MessageCrypto> = OnceLock::new();
    CRYPTO.get_or_init(|| MessageCrypto::new(KEY, APP_ID).expect("valid key"))
}

fn check(encrypt: &str) {
    let raw = crypto().decrypt_raw(encrypt);
    let checked = crypto().decrypt(encrypt);
    match (&raw, &checked) {
        (Ok(raw), Ok(message)) => {
            assert_eq!(&raw.message, message);
            assert_eq!(raw.receive_id, APP_ID);
            assert!((1..=32).contains(&raw.pad));
        }
        (Ok(raw), Err(_)) => assert_ne!(raw.receive_id, APP_ID),
        (Err(_), Ok(_)) => panic!("decrypt accepted what decrypt_raw refused"),
        (Err(_), Err(_)) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            check(text);
        }
        check(&STANDARD.encode(rest));
    } else {
        let mut plain = rest[..rest.len() - rest.len() % 16].to_vec();
        if plain.is_empty() {
            return;
        }
        let len = plain.len();
        let ciphertext = cbc::Encryptor::<Aes256>::new(&[0u8; 32].into(), &[0u8; 16].into())
            .encrypt_padded::<NoPadding>(&mut plain, len)
            .expect("whole blocks");
        check(&STANDARD.encode(ciphertext));
    }
});
