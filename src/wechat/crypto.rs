//! WeChat safe-mode / compatible-mode message encryption (`wechat-api.md §3`).
//!
//! * Key: `AESKey = Base64_Decode(EncodingAESKey + "=")`, 32 bytes; IV = `AESKey[..16]` (§3.2).
//! * Cipher: AES-256-CBC **without** cipher-level padding; the plaintext is padded
//!   by hand with PKCS#7 to a multiple of **32** bytes, so the pad is 1..=32 (§3.2, §3.6.1).
//! * Plaintext layout: `random(16) ‖ be_u32(len(msg)) ‖ msg ‖ receive_id` (§3.3),
//!   where `receive_id` is the Official Account appid (or the WeCom corpid).
//!
//! CBC is not authenticated (the `cbc` crate says so itself): always check the
//! `msg_signature` (see [`super::signature`]) **before** decrypting, and use
//! [`MessageCrypto::decrypt`], which also checks the receive id (§3.6.4).

use std::fmt;

use aes::Aes256;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use rand::Rng as _;
use subtle::ConstantTimeEq;

/// Length of an EncodingAESKey in characters (§3.2).
const ENCODING_AES_KEY_LEN: usize = 43;
/// AES-256 key length in bytes.
const KEY_LEN: usize = 32;
/// AES block size: the ciphertext is a whole number of these.
const AES_BLOCK: usize = 16;
/// WeChat's PKCS#7 "block" size (§3.2: "K 为秘钥字节数（采用 32）").
const PAD_BLOCK: usize = 32;
/// Length of the random prefix of the plaintext (§3.3).
const RANDOM_LEN: usize = 16;
/// Random prefix plus the big-endian u32 message length (§3.3).
const HEADER_LEN: usize = RANDOM_LEN + 4;

/// Base64 engine for the EncodingAESKey: standard alphabet, but non-zero
/// trailing bits accepted. 43 chars carry 258 bits, the last 2 are often
/// non-zero, and the strict engine rejects such keys (§3.6.2).
const KEY_ENGINE: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true));

/// Errors from [`MessageCrypto`]. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The EncodingAESKey is malformed; the string says how (not what it was).
    #[error("invalid EncodingAESKey: {0}")]
    InvalidKey(String),
    /// The `Encrypt` text is not valid standard base64.
    #[error("ciphertext is not valid base64")]
    Base64,
    /// The ciphertext or the decrypted layout has an impossible length.
    #[error("ciphertext or decrypted message has an invalid length")]
    Length,
    /// The decrypted PKCS#7 padding (block size 32) is invalid.
    #[error("invalid PKCS#7 padding in decrypted message")]
    Padding,
    /// The receive id (appid/corpid) at the end of the plaintext is not ours.
    #[error("receive id mismatch: expected {expected:?}, found {found:?}")]
    AppIdMismatch {
        /// The receive id this instance was configured with.
        expected: String,
        /// The receive id found in the decrypted message.
        found: String,
    },
    /// The decrypted message or receive id is not valid UTF-8.
    #[error("decrypted message is not valid UTF-8")]
    Utf8,
}

/// Everything recovered from one ciphertext by [`MessageCrypto::decrypt_raw`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The 16 random bytes that prefix the plaintext.
    pub random: [u8; 16],
    /// The message (XML or JSON text).
    pub message: String,
    /// The receive id (appid/corpid) that followed the message; not yet checked.
    pub receive_id: String,
    /// The PKCS#7 pad length that was stripped (1..=32).
    pub pad: u8,
}

/// Encrypts and decrypts WeChat message bodies for one account.
///
/// `Debug` shows the receive id only, never the key.
#[derive(Clone)]
pub struct MessageCrypto {
    key: [u8; 32],
    receive_id: String,
}

impl fmt::Debug for MessageCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageCrypto").field("receive_id", &self.receive_id).finish_non_exhaustive()
    }
}

impl MessageCrypto {
    /// Builds a codec from the 43-character EncodingAESKey and the receive id
    /// (the Official Account appid, or the WeCom corpid).
    ///
    /// The key must be exactly 43 characters of `[A-Za-z0-9]` (§3.2) and is
    /// decoded as `key + "="` with non-zero trailing bits accepted (§3.6.2).
    pub fn new(encoding_aes_key: &str, receive_id: &str) -> Result<Self, CryptoError> {
        let len = encoding_aes_key.chars().count();
        if len != ENCODING_AES_KEY_LEN {
            return Err(CryptoError::InvalidKey(format!("must be {ENCODING_AES_KEY_LEN} characters, got {len}")));
        }
        // §3.2: "EncodingAESKey is 43 characters from [a-zA-Z0-9]". This also
        // rules out '+' and '/', which WeChat never generates.
        if !encoding_aes_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(CryptoError::InvalidKey("must contain only the characters A-Z, a-z and 0-9".to_owned()));
        }
        let mut padded = String::with_capacity(ENCODING_AES_KEY_LEN + 1);
        padded.push_str(encoding_aes_key);
        padded.push('=');
        let decoded =
            KEY_ENGINE.decode(padded.as_bytes()).map_err(|_| CryptoError::InvalidKey("is not valid base64".to_owned()))?;
        let key: [u8; KEY_LEN] =
            decoded.as_slice().try_into().map_err(|_| CryptoError::InvalidKey(format!("must decode to {KEY_LEN} bytes")))?;
        Ok(Self { key, receive_id: receive_id.to_owned() })
    }

    /// The receive id (appid/corpid) this codec checks and appends.
    pub fn receive_id(&self) -> &str {
        &self.receive_id
    }

    /// IV = first 16 bytes of the key (§3.2: "取AESKey前16字节").
    fn iv(&self) -> [u8; AES_BLOCK] {
        let mut iv = [0u8; AES_BLOCK];
        iv.copy_from_slice(&self.key[..AES_BLOCK]);
        iv
    }

    /// Decrypts an `Encrypt` value and splits the plaintext, **without**
    /// checking the receive id. Prefer [`Self::decrypt`].
    pub fn decrypt_raw(&self, encrypt_b64: &str) -> Result<Decrypted, CryptoError> {
        let mut buf = STANDARD.decode(encrypt_b64.as_bytes()).map_err(|_| CryptoError::Base64)?;
        // The ciphertext is whole AES blocks (16); WeChat's plaintext is padded
        // to 32, but only the block-cipher constraint is enforced here.
        if buf.is_empty() || buf.len() % AES_BLOCK != 0 {
            return Err(CryptoError::Length);
        }
        let iv = self.iv();
        // NoPadding: a stock PKCS#7 unpad assumes block 16 and rejects every
        // pad above 16, about half of all real messages (§3.6.1).
        let plain_len = cbc::Decryptor::<Aes256>::new(&self.key.into(), &iv.into())
            .decrypt_padded::<NoPadding>(&mut buf)
            .map_err(|_| CryptoError::Length)?
            .len();
        buf.truncate(plain_len);

        let pad = unpad32(&buf)?;
        let content = &buf[..buf.len() - usize::from(pad)];
        if content.len() < HEADER_LEN {
            return Err(CryptoError::Length);
        }
        let mut random = [0u8; RANDOM_LEN];
        random.copy_from_slice(&content[..RANDOM_LEN]);
        // §3.3: msg_len is a network-order (big-endian) u32 counting bytes.
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&content[RANDOM_LEN..HEADER_LEN]);
        let msg_len = usize::try_from(u32::from_be_bytes(len_bytes)).map_err(|_| CryptoError::Length)?;
        let msg_end = HEADER_LEN.checked_add(msg_len).ok_or(CryptoError::Length)?;
        if msg_end > content.len() {
            return Err(CryptoError::Length);
        }
        let message = std::str::from_utf8(&content[HEADER_LEN..msg_end]).map_err(|_| CryptoError::Utf8)?.to_owned();
        let receive_id = std::str::from_utf8(&content[msg_end..]).map_err(|_| CryptoError::Utf8)?.to_owned();
        Ok(Decrypted { random, message, receive_id, pad })
    }

    /// Decrypts an `Encrypt` value and returns the message, after checking
    /// that the trailing receive id equals ours (§3.6.4, wechatpy's
    /// `InvalidAppIdException`).
    pub fn decrypt(&self, encrypt_b64: &str) -> Result<String, CryptoError> {
        let decrypted = self.decrypt_raw(encrypt_b64)?;
        let same: bool = decrypted.receive_id.as_bytes().ct_eq(self.receive_id.as_bytes()).into();
        if !same {
            return Err(CryptoError::AppIdMismatch { expected: self.receive_id.clone(), found: decrypted.receive_id });
        }
        Ok(decrypted.message)
    }

    /// Encrypts `message` with the given 16-byte random prefix and returns the
    /// base64 `Encrypt` text. Deterministic; meant for tests and simulators.
    ///
    /// # Panics
    /// If `message` is longer than `u32::MAX` bytes (the length field is a u32, §3.3).
    pub fn encrypt_with_random(&self, message: &str, random: &[u8; 16]) -> String {
        let msg_len = u32::try_from(message.len()).expect("WeChat message longer than 4 GiB");
        let unpadded = HEADER_LEN + message.len() + self.receive_id.len();
        // §3.2: pad K - N % K bytes of value K - N % K with K = 32, so 1..=32;
        // an aligned plaintext gets a full 32 bytes of 0x20.
        let pad = PAD_BLOCK - unpadded % PAD_BLOCK;
        let mut buf = Vec::with_capacity(unpadded + pad);
        buf.extend_from_slice(random);
        buf.extend_from_slice(&msg_len.to_be_bytes());
        buf.extend_from_slice(message.as_bytes());
        buf.extend_from_slice(self.receive_id.as_bytes());
        // `pad` is in 1..=32, so the cast is lossless.
        buf.resize(unpadded + pad, pad as u8);

        let iv = self.iv();
        let len = buf.len();
        let ciphertext = cbc::Encryptor::<Aes256>::new(&self.key.into(), &iv.into())
            .encrypt_padded::<NoPadding>(&mut buf, len)
            .expect("buffer is a whole number of 32-byte blocks");
        STANDARD.encode(ciphertext)
    }

    /// Encrypts `message` with 16 fresh random bytes (better than reusing the
    /// inbound prefix as silenceper does, §3.6.5) and returns the base64 text.
    ///
    /// # Panics
    /// As [`Self::encrypt_with_random`].
    pub fn encrypt(&self, message: &str) -> String {
        let mut random = [0u8; RANDOM_LEN];
        rand::rng().fill_bytes(&mut random);
        self.encrypt_with_random(message, &random)
    }
}

/// Validates WeChat's PKCS#7 padding (block 32) at the end of `buf` and
/// returns the pad length (§3.3 step 2: require 1 ≤ pad ≤ 32).
fn unpad32(buf: &[u8]) -> Result<u8, CryptoError> {
    let pad = *buf.last().ok_or(CryptoError::Padding)?;
    let n = usize::from(pad);
    if n == 0 || n > PAD_BLOCK || n > buf.len() {
        return Err(CryptoError::Padding);
    }
    if buf[buf.len() - n..].iter().any(|&b| b != pad) {
        return Err(CryptoError::Padding);
    }
    Ok(pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry of `encrypted` in wechat-crypto-vectors.json.
    struct Vector {
        key: &'static str,
        aes_key_hex: &'static str,
        receive_id: &'static str,
        encrypt: &'static str,
        random: &'static str,
        msg_len: usize,
        pad: u8,
        plaintext: &'static str,
    }

    /// Decrypts, checks every recovered field, and re-encrypts with the
    /// recovered random prefix to the byte-identical `encrypt` text.
    fn check_vector(v: &Vector) {
        let c = MessageCrypto::new(v.key, v.receive_id).unwrap();
        assert_eq!(hex::encode(c.key), v.aes_key_hex);
        assert_eq!(hex::encode(c.iv()), v.aes_key_hex[..32]);
        let d = c.decrypt_raw(v.encrypt).unwrap();
        assert_eq!(d.message, v.plaintext);
        assert_eq!(d.message.len(), v.msg_len);
        assert_eq!(&d.random, v.random.as_bytes());
        assert_eq!(d.pad, v.pad);
        assert_eq!(d.receive_id, v.receive_id);
        assert_eq!(c.decrypt(v.encrypt).unwrap(), v.plaintext);
        let random: [u8; 16] = v.random.as_bytes().try_into().unwrap();
        assert_eq!(c.encrypt_with_random(v.plaintext, &random), v.encrypt);
    }

    const KEY_ABC: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const KEY_ABC_HEX: &str = "69b71d79f8218a39259a7a29aabb2dbafc31cb3d35db7e39ebbf3d0010831051";
    const KEY_ZERO: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const KEY_ZERO_HEX: &str = "0000000000000000000000000000000000000000000000000000000000000000";
    const KEY_WECOM: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const KEY_WECOM_HEX: &str = "8d69989bbaabe67328014c194631ad0719b3dca035b64023df292447aab60760";
    const KEY_WECHATPY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const KEY_WECHATPY_HEX: &str = "916c4f115d94103cb15a998f74a0b71787603c398ebdf297d471a71140d2d5a4";

    #[test]
    fn vector_easywechat_encryptor_test() {
        check_vector(&Vector {
            key: KEY_ABC,
            aes_key_hex: KEY_ABC_HEX,
            receive_id: "wxb11529c136998cb6",
            encrypt: "rTNFcsut4LfGuAFKEUVVpwcaCOTJzOd9twZdIW910jb3k+iicx2uvhttIZ3Qg9Qgty3BEF2xbOrz6boTfb30dMomcgrkTqdFPwnhqbk+kIQ7rZiwny9D7NUrTgA5kpX3KsZvrXzUZyP2x9YOlxbgm572lmxKvM7HAQQhIQ/p6HBmoY30bGXFK0BtIu1pW9TjhOYrLQoU18nWYjWqDA1ynkmOytpv7QRI1P1+0NoxL0q2zO1DgeSvnE8CZGo/o5Ap/WHK5W2RAsinpzN4/LjPnmB6U01I5XCoJoC0GK/yMZycd2Oh8Nq6+wBkC1U85oy0ktOY4nLvsQMLrourmMGdZHuTbqpeJ8Ao/5PRYJ+WBvRUwPfGKBL2+2IKZF49vAJqkcGWSHGE76ZN2erXeuNazf/o9o3lIE3q739o4c8t9QGPe31GT2Go/rOz1BsrASwvauNulCh+++yz+CQzBIuikA==",
            random: "d43123b161a4ba84",
            msg_len: 293,
            pad: 21,
            plaintext: "<xml><URL><![CDATA[http://wechat.laravel.so/server]]></URL><ToUserName><![CDATA[asdasdasd]]></ToUserName><FromUserName><![CDATA[asdasdasdsadasd]]></FromUserName><CreateTime>1234567898</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello]]></Content><MsgId>12345</MsgId></xml>",
        });
    }

    #[test]
    fn vector_official_message_push_doc_json() {
        check_vector(&Vector {
            key: KEY_ZERO,
            aes_key_hex: KEY_ZERO_HEX,
            receive_id: "wxba5fad812f8e6fb9",
            encrypt: "+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04=",
            random: "a8eedb185eb2fecf",
            msg_len: 167,
            pad: 19,
            plaintext: r#"{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714112445,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}"#,
        });
    }

    #[test]
    fn vector_wecom_official_sample_msg() {
        check_vector(&Vector {
            key: KEY_WECOM,
            aes_key_hex: KEY_WECOM_HEX,
            receive_id: "wx5823bf96d3bd56c7",
            encrypt: "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==",
            random: "0960688932c47ef1",
            msg_len: 284,
            pad: 30,
            plaintext: "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<FromUserName><![CDATA[mycreate]]></FromUserName>\n<CreateTime>1409659813</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[hello]]></Content>\n<MsgId>4561255354251345929</MsgId>\n<AgentID>218</AgentID>\n</xml>",
        });
    }

    #[test]
    fn vector_wecom_official_sample_verifyurl_echostr() {
        check_vector(&Vector {
            key: KEY_WECOM,
            aes_key_hex: KEY_WECOM_HEX,
            receive_id: "wx5823bf96d3bd56c7",
            encrypt: "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
            random: "c41b64491c2468d0",
            msg_len: 19,
            pad: 7,
            plaintext: "1616140317555161061",
        });
    }

    #[test]
    fn vector_wechatpy_work_check_signature() {
        check_vector(&Vector {
            key: KEY_WECHATPY,
            aes_key_hex: KEY_WECHATPY_HEX,
            receive_id: "wx49f0ab532d5d035a",
            encrypt: "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==",
            random: "2304fc2fe146f1f8",
            msg_len: 19,
            pad: 7,
            plaintext: "5927782489442352469",
        });
    }

    #[test]
    fn vector_wechatpy_work_decrypt() {
        check_vector(&Vector {
            key: KEY_WECHATPY,
            aes_key_hex: KEY_WECHATPY_HEX,
            receive_id: "wx49f0ab532d5d035a",
            encrypt: "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=",
            random: "ec90b1530358d4d3",
            msg_len: 281,
            pad: 1,
            plaintext: "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n<FromUserName><![CDATA[messense]]></FromUserName>\n<CreateTime>1411525903</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<MsgId>4363689963896700987</MsgId>\n<AgentID>1</AgentID>\n</xml>",
        });
    }

    #[test]
    fn vector_wechatpy_work_encrypt_reply() {
        check_vector(&Vector {
            key: KEY_WECHATPY,
            aes_key_hex: KEY_WECHATPY_HEX,
            receive_id: "wx49f0ab532d5d035a",
            encrypt: "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3",
            random: "1234567890123456",
            msg_len: 247,
            pad: 3,
            plaintext: "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>",
        });
    }

    #[test]
    fn vector_official_message_push_doc_json_reply() {
        check_vector(&Vector {
            key: KEY_ZERO,
            aes_key_hex: KEY_ZERO_HEX,
            receive_id: "wxba5fad812f8e6fb9",
            encrypt: "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ==",
            random: "707722b803182950",
            msg_len: 25,
            pad: 1,
            plaintext: r#"{"demo_resp":"good luck"}"#,
        });
    }

    const WXJAVA_RANDOM: &[u8; 16] = b"aaaabbbbccccdddd";

    #[test]
    fn vector_wxjava_golden_1() {
        let c = MessageCrypto::new(KEY_ABC, "wxb11529c136998cb6").unwrap();
        let expected = "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg==";
        assert_eq!(c.encrypt_with_random("我是中文abcd123", WXJAVA_RANDOM), expected);
        let d = c.decrypt_raw(expected).unwrap();
        assert_eq!(d.message, "我是中文abcd123");
        // msg_len counts UTF-8 bytes, not characters (§3.3).
        assert_eq!(d.message.len(), 19);
        assert_eq!(&d.random, WXJAVA_RANDOM);
        assert_eq!(c.decrypt(expected).unwrap(), "我是中文abcd123");
    }

    #[test]
    fn vector_wxjava_golden_2() {
        let c = MessageCrypto::new(KEY_ABC, "wxb11529c136998cb6").unwrap();
        let plaintext = "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName><FromUserName><![CDATA[gh_7f083739789a]]></FromUserName><CreateTime>1407743423</CreateTime><MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA[eYJ1MbwPRJtOvIEabaxHs7TX2D-HV71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]></MediaId><Title><![CDATA[testCallBackReplyVideo]]></Title><Description><![CDATA[testCallBackReplyVideo]]></Description></Video></xml>";
        let expected = "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlkupqcEcW7ZQweImX9+wLMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9enGIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04sq7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQwr92vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4RscuQ+RdxSGvDahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGvZ9Yrf57cExWtnX8aCMMaBropU/1k+hKP5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb";
        assert_eq!(c.encrypt_with_random(plaintext, WXJAVA_RANDOM), expected);
        assert_eq!(c.decrypt(expected).unwrap(), plaintext);
    }

    /// Encrypts an arbitrary, already padded plaintext (test helper for
    /// malformed layouts that `encrypt_with_random` can never produce).
    fn encrypt_raw_bytes(c: &MessageCrypto, plain: &[u8]) -> String {
        let mut buf = plain.to_vec();
        let len = buf.len();
        let ct = cbc::Encryptor::<Aes256>::new(&c.key.into(), &c.iv().into()).encrypt_padded::<NoPadding>(&mut buf, len).unwrap();
        STANDARD.encode(ct)
    }

    #[test]
    fn wrong_app_id_is_rejected() {
        let sender = MessageCrypto::new(KEY_ABC, "wxb11529c136998cb6").unwrap();
        let receiver = MessageCrypto::new(KEY_ABC, "wx0000000000000000").unwrap();
        let ct = sender.encrypt("hello");
        match receiver.decrypt(&ct) {
            Err(CryptoError::AppIdMismatch { expected, found }) => {
                assert_eq!(expected, "wx0000000000000000");
                assert_eq!(found, "wxb11529c136998cb6");
            }
            other => panic!("expected AppIdMismatch, got {other:?}"),
        }
        // decrypt_raw does not check, and reports what it found.
        assert_eq!(receiver.decrypt_raw(&ct).unwrap().receive_id, "wxb11529c136998cb6");
    }

    #[test]
    fn round_trip_with_full_block_of_padding() {
        let c = MessageCrypto::new(KEY_ABC, "wxb11529c136998cb6").unwrap();
        // 16 + 4 + 26 + 18 = 64, a multiple of 32 → pad must be a full 32 bytes.
        let msg = "abcdefghijklmnopqrstuvwxyz";
        assert_eq!((HEADER_LEN + msg.len() + c.receive_id().len()) % PAD_BLOCK, 0);
        let ct = c.encrypt(msg);
        assert_eq!(STANDARD.decode(&ct).unwrap().len(), 96);
        let d = c.decrypt_raw(&ct).unwrap();
        assert_eq!(d.pad, 32);
        assert_eq!(d.message, msg);
        assert_eq!(c.decrypt(&ct).unwrap(), msg);
    }

    #[test]
    fn round_trip_many_lengths_and_fresh_random() {
        let c = MessageCrypto::new(KEY_WECOM, "wx5823bf96d3bd56c7").unwrap();
        for n in 0..80 {
            let msg: String = "é".repeat(n / 2) + &"x".repeat(n % 2);
            let ct = c.encrypt(&msg);
            let d = c.decrypt_raw(&ct).unwrap();
            assert_eq!(d.message, msg);
            assert!((1..=32).contains(&d.pad));
        }
        assert_ne!(c.encrypt("same"), c.encrypt("same"), "random prefix must be fresh");
    }

    #[test]
    fn tampered_ciphertext_errors_without_panicking() {
        let c = MessageCrypto::new(KEY_ABC, "wxb11529c136998cb6").unwrap();
        let ct = c.encrypt_with_random("hello tamper test", WXJAVA_RANDOM);
        let raw = STANDARD.decode(&ct).unwrap();
        // Flipping the last byte of the second-to-last block flips the pad byte.
        let mut bad = raw.clone();
        let i = bad.len() - AES_BLOCK - 1;
        bad[i] ^= 0x01;
        assert!(matches!(c.decrypt(&STANDARD.encode(&bad)), Err(CryptoError::Padding)));
        // Every single-byte change: an error or a different message, never a panic.
        for i in 0..raw.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = raw.clone();
                bad[i] ^= mask;
                if let Ok(m) = c.decrypt(&STANDARD.encode(&bad)) {
                    assert_ne!(m, "hello tamper test", "byte {i} mask {mask:#x}");
                }
            }
        }
        // Truncated, empty, misaligned, non-base64.
        assert!(c.decrypt(&STANDARD.encode(&raw[AES_BLOCK..])).is_err());
        assert!(matches!(c.decrypt(""), Err(CryptoError::Length)));
        assert!(matches!(c.decrypt(&STANDARD.encode(&raw[..raw.len() - 1])), Err(CryptoError::Length)));
        assert!(matches!(c.decrypt("not base64!"), Err(CryptoError::Base64)));
    }

    #[test]
    fn malformed_plaintext_layouts() {
        let c = MessageCrypto::new(KEY_ZERO, "wxba5fad812f8e6fb9").unwrap();
        let mut block = [0u8; 32];
        // pad byte 0 and pad byte 33 are both invalid.
        assert!(matches!(c.decrypt_raw(&encrypt_raw_bytes(&c, &block)), Err(CryptoError::Padding)));
        block[31] = 33;
        assert!(matches!(c.decrypt_raw(&encrypt_raw_bytes(&c, &block)), Err(CryptoError::Padding)));
        // Inconsistent pad bytes: last byte says 4, the three before it are not 4.
        block[31] = 4;
        assert!(matches!(c.decrypt_raw(&encrypt_raw_bytes(&c, &block)), Err(CryptoError::Padding)));
        // Valid pad but msg_len runs past the end.
        let mut plain = vec![0u8; 16];
        plain.extend_from_slice(&u32::MAX.to_be_bytes());
        plain.extend_from_slice(&[12u8; 12]);
        assert!(matches!(c.decrypt_raw(&encrypt_raw_bytes(&c, &plain)), Err(CryptoError::Length)));
        // Content shorter than the 20-byte header.
        let short = [16u8; 32];
        let mut short = short.to_vec();
        short[..16].fill(0);
        assert!(matches!(c.decrypt_raw(&encrypt_raw_bytes(&c, &short)), Err(CryptoError::Length)));
        // Invalid UTF-8 in the message.
        let mut plain = vec![0u8; 16];
        plain.extend_from_slice(&2u32.to_be_bytes());
        plain.extend_from_slice(&[0xff, 0xfe]);
        plain.extend_from_slice(&[10u8; 10]);
        assert!(matches!(c.decrypt_raw(&encrypt_raw_bytes(&c, &plain)), Err(CryptoError::Utf8)));
    }

    #[test]
    fn keys_with_nonzero_trailing_bits_are_accepted() {
        // 'G', 'C' and 'R' leave non-zero trailing bits (§3.6.2).
        for (key, hex_key) in [(KEY_ABC, KEY_ABC_HEX), (KEY_WECOM, KEY_WECOM_HEX), (KEY_WECHATPY, KEY_WECHATPY_HEX)] {
            assert!(STANDARD.decode(format!("{key}=")).is_err(), "strict engine rejects {key}");
            let c = MessageCrypto::new(key, "wx").unwrap();
            assert_eq!(hex::encode(c.key), hex_key);
        }
    }

    #[test]
    fn invalid_keys_are_rejected_without_echoing_them() {
        let bad = [
            &KEY_ABC[..42],
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF+",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF/",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF=",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFé",
            "",
        ];
        for key in bad {
            match MessageCrypto::new(key, "wx") {
                Err(e @ CryptoError::InvalidKey(_)) => {
                    let msg = e.to_string();
                    if !key.is_empty() {
                        assert!(!msg.contains(key), "{msg}");
                    }
                    assert!(!msg.contains("abcdefghij"), "{msg}");
                }
                other => panic!("expected InvalidKey for {key:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let c = MessageCrypto::new(KEY_ABC, "wxb11529c136998cb6").unwrap();
        let dbg = format!("{c:?}");
        assert!(dbg.contains("wxb11529c136998cb6"));
        assert!(!dbg.contains(KEY_ABC));
        assert!(!dbg.contains("key"));
        assert!(!dbg.contains("105")); // first key byte 0x69 in decimal
    }
}
