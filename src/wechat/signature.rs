//! WeChat request signatures (`signature` and `msg_signature`).
//!
//! Both signatures use the same construction (`wechat-api.md §1`, `§3.4`):
//! sort the parameter strings in byte-wise (ASCII) order, concatenate them
//! without a separator, SHA-1 the result and render it as 40 lowercase hex
//! characters.
//!
//! * `signature` (URL handshake and every POST) signs `[token, timestamp, nonce]`.
//! * `msg_signature` (safe/compatible mode) signs `[token, timestamp, nonce, Encrypt]`,
//!   where `Encrypt` is the base64 text from the body. Do **not** mix the two up
//!   (`wechat-api.md §3.4`, the top field complaint).

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Computes a WeChat signature over `parts`: byte-wise sort, concatenate,
/// SHA-1, lowercase hex.
///
/// The parts are sorted as strings, never as numbers: `timestamp` and `nonce`
/// must not be parsed (`wechat-api.md §1`, "字典序排序").
pub fn sign(parts: &[&str]) -> String {
    let mut sorted: Vec<&str> = parts.to_vec();
    // `str`'s `Ord` is lexicographic over the UTF-8 bytes, i.e. ASCII order for
    // the ASCII inputs WeChat uses (§1).
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for part in sorted {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Checks `signature` (hex, any case) against the signature of `parts` in
/// constant time.
///
/// Returns `false` for a signature of the wrong length or with non-hex
/// characters.
pub fn verify(signature: &str, parts: &[&str]) -> bool {
    let expected = sign(parts);
    let given = signature.to_ascii_lowercase();
    // Constant-time compare, as EasyWeChat's `hash_equals()` (§1). `ct_eq` on
    // slices of different lengths returns false without comparing contents.
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `plain_signature[official_url_verify_get]` (wechat-crypto-vectors.json).
    #[test]
    fn official_url_verify_get() {
        let parts = ["AAAAA", "1714036504", "1514711492"];
        assert_eq!(sign(&parts), "f464b24fc39322e44b38aa78f5edd27bd1441696");
        assert!(verify("f464b24fc39322e44b38aa78f5edd27bd1441696", &parts));
    }

    /// `plain_signature[official_plain_post]`.
    #[test]
    fn official_plain_post() {
        let parts = ["AAAAA", "1714037059", "486452656"];
        assert_eq!(sign(&parts), "899cf89e464efb63f54ddac96b0a0a235f53aa78");
        assert!(verify("899cf89e464efb63f54ddac96b0a0a235f53aa78", &parts));
    }

    /// `plain_signature[wxjava_sha1_helper]`.
    #[test]
    fn wxjava_sha1_helper() {
        assert_eq!(sign(&["123", "345"]), "9f537aeb751ec72605f57f94a2f6dc3e3958e1dd");
        assert_eq!(sign(&["345", "123"]), "9f537aeb751ec72605f57f94a2f6dc3e3958e1dd");
    }

    /// The URL `signature` of the safe-mode POST (`encrypted[official_message_push_doc_json].url_signature`).
    #[test]
    fn official_safe_post_url_signature() {
        let parts = ["AAAAA", "1714112445", "415670741"];
        assert!(verify("6c5c811b55cc85e0e1b54100749188c20beb3f5d", &parts));
    }

    /// `(name, token, timestamp, nonce, encrypt, msg_signature)` for every
    /// `encrypted` entry that carries a `msg_signature`.
    const MSG_SIGNATURES: &[(&str, &str, &str, &str, &str, &str)] = &[
        (
            "easywechat_encryptor_test",
            "pamtest",
            "1458300676",
            "260774613",
            "rTNFcsut4LfGuAFKEUVVpwcaCOTJzOd9twZdIW910jb3k+iicx2uvhttIZ3Qg9Qgty3BEF2xbOrz6boTfb30dMomcgrkTqdFPwnhqbk+kIQ7rZiwny9D7NUrTgA5kpX3KsZvrXzUZyP2x9YOlxbgm572lmxKvM7HAQQhIQ/p6HBmoY30bGXFK0BtIu1pW9TjhOYrLQoU18nWYjWqDA1ynkmOytpv7QRI1P1+0NoxL0q2zO1DgeSvnE8CZGo/o5Ap/WHK5W2RAsinpzN4/LjPnmB6U01I5XCoJoC0GK/yMZycd2Oh8Nq6+wBkC1U85oy0ktOY4nLvsQMLrourmMGdZHuTbqpeJ8Ao/5PRYJ+WBvRUwPfGKBL2+2IKZF49vAJqkcGWSHGE76ZN2erXeuNazf/o9o3lIE3q739o4c8t9QGPe31GT2Go/rOz1BsrASwvauNulCh+++yz+CQzBIuikA==",
            "4f3ad57b6989f09f4eb392acce4f9e93942ed890",
        ),
        (
            "official_message_push_doc_json",
            "AAAAA",
            "1714112445",
            "415670741",
            "+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04=",
            "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3",
        ),
        (
            "wecom_official_sample_msg",
            "QDG6eK",
            "1409659813",
            "1372623149",
            "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==",
            "477715d11cdb4164915debcba66cb864d751f3e6",
        ),
        (
            "wecom_official_sample_verifyurl_echostr",
            "QDG6eK",
            "1409659589",
            "263014780",
            "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
            "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
        ),
        (
            "wechatpy_work_check_signature",
            "123456",
            "1411443780",
            "437374425",
            "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==",
            "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96",
        ),
        (
            "wechatpy_work_decrypt",
            "123456",
            "1411525903",
            "461056294",
            "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=",
            "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
        ),
        (
            "wechatpy_work_encrypt_reply",
            "123456",
            "1411525903",
            "461056294",
            "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3",
            "407518b7649e86ef23978113f92d27afa9296533",
        ),
        (
            "official_message_push_doc_json_reply",
            "AAAAA",
            "1713424427",
            "415670741",
            "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ==",
            "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1",
        ),
        // wxjava_golden_1 / _2: signatures derived in wechat-api.md §3.7 for
        // timestamp 1409304348 and nonce "xxxxxx" over the expected_encrypt text.
        (
            "wxjava_golden_1",
            "pamtest",
            "1409304348",
            "xxxxxx",
            "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg==",
            "82c962d39941aa48552f90ef55aa323dc620cc10",
        ),
        (
            "wxjava_golden_2",
            "pamtest",
            "1409304348",
            "xxxxxx",
            "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlkupqcEcW7ZQweImX9+wLMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9enGIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04sq7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQwr92vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4RscuQ+RdxSGvDahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGvZ9Yrf57cExWtnX8aCMMaBropU/1k+hKP5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb",
            "ea88b765074e41eb8c7a75b449db34fa2fd560d5",
        ),
    ];

    #[test]
    fn msg_signature_of_every_encrypted_vector() {
        for (name, token, timestamp, nonce, encrypt, expected) in MSG_SIGNATURES {
            let parts = [*token, *timestamp, *nonce, *encrypt];
            assert_eq!(sign(&parts), *expected, "vector {name}");
            assert!(verify(expected, &parts), "vector {name}");
        }
    }

    /// wechatpy `test_check_signature` negative case: nonce 437374425 → 437374424.
    #[test]
    fn nonce_changed_by_one_digit_fails() {
        let encrypt = MSG_SIGNATURES.iter().find(|v| v.0 == "wechatpy_work_check_signature").unwrap().4;
        let good = ["123456", "1411443780", "437374425", encrypt];
        let bad = ["123456", "1411443780", "437374424", encrypt];
        assert!(verify("dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", &good));
        assert!(!verify("dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", &bad));
    }

    #[test]
    fn verify_accepts_uppercase_and_rejects_garbage() {
        let parts = ["AAAAA", "1714036504", "1514711492"];
        assert!(verify("F464B24FC39322E44B38AA78F5EDD27BD1441696", &parts));
        assert!(!verify("", &parts));
        assert!(!verify("f464b24fc39322e44b38aa78f5edd27bd144169", &parts));
        assert!(!verify("f464b24fc39322e44b38aa78f5edd27bd14416960", &parts));
        assert!(!verify("g464b24fc39322e44b38aa78f5edd27bd1441696", &parts));
    }

    /// Sorting is over strings, not numbers: "9" sorts after "10".
    #[test]
    fn sorts_as_strings_not_numbers() {
        assert_eq!(sign(&["9", "10"]), sign(&["10", "9"]));
        let mut h = Sha1::new();
        h.update(b"109");
        assert_eq!(sign(&["9", "10"]), hex::encode(h.finalize()));
    }
}
