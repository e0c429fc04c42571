//! `wechat-bridge setup`, WeChat's part: what to paste into the Official Account's console.
//!
//! The WeChat token and AES key are printed on purpose (they are the user's own settings, to be
//! pasted into WeChat's console) but never logged.

use rand::RngExt as _;

use super::crypto::MessageCrypto;
use crate::config::WeChatConfig;

/// What to paste into WeChat's console (设置与开发 → 基本配置 → 服务器配置).
pub fn write_console_values(wechat: &WeChatConfig, public: &str, out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(out, "WeChat Official Account console, Settings and Development → Basic Configuration → Server Configuration")?;
    writeln!(out, "(设置与开发 → 基本配置 → 服务器配置), Modify Configuration (修改配置):")?;
    writeln!(out, "  URL (服务器地址)                    {public}/webhooks/wechat")?;
    writeln!(out, "  Token (令牌)                        {}", wechat.token.expose())?;
    match &wechat.encoding_aes_key {
        Some(key) => {
            writeln!(out, "  EncodingAESKey (消息加解密密钥)     {}", key.expose())?;
            writeln!(out, "  Message encryption (消息加解密方式) Safe mode (安全模式), recommended")?;
        }
        None => {
            let fresh = generate_encoding_aes_key();
            writeln!(out, "  EncodingAESKey (消息加解密密钥)     not configured: the bridge is in plaintext mode (明文模式)")?;
            writeln!(
                out,
                "  Message encryption (消息加解密方式) Plaintext mode (明文模式) for now; safe mode (安全模式) is recommended:"
            )?;
            writeln!(out, "    1. set WECHAT_ENCODING_AES_KEY={fresh} (a freshly generated key) and restart the bridge;")?;
            writeln!(out, "    2. paste the same key as EncodingAESKey in the console and choose Safe mode (安全模式).")?;
        }
    }
    writeln!(out, "Then Submit (提交) and Enable (启用): WeChat checks the URL with a signed GET, which the bridge answers.")?;
    writeln!(out, "Also add this server's outgoing IP address to the IP whitelist (IP白名单) on the same page,")?;
    writeln!(out, "or WeChat refuses the bridge's access-token requests (errcode 40164).")?;
    Ok(())
}

/// A fresh 43-character EncodingAESKey from `[A-Za-z0-9]`, as WeChat's console generates them.
fn generate_encoding_aes_key() -> String {
    loop {
        let key: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(43).map(char::from).collect();
        // Every alphanumeric 43-char string decodes to 32 bytes; check anyway.
        if MessageCrypto::new(&key, "wx").is_ok() {
            return key;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_aes_key_is_valid() {
        let key = generate_encoding_aes_key();
        assert_eq!(key.len(), 43);
        assert!(key.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(key, generate_encoding_aes_key());
    }
}
