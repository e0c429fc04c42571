//! `GET /media/{id}`: inbound WeChat media for agents' clients, behind signed, expiring links.
//! WeChat's own media URL would carry the access token (`wechat-api.md` §7.3), so the bridge
//! fetches it (`media/get`), caches it, and hands out HMAC-signed links instead.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::client::WeChatClient;
use crate::store::Store;

/// Links live as long as WeChat keeps the media (3 days, §7.1).
pub const LINK_TTL_SECS: i64 = 3 * 24 * 3600;

/// Signs and checks media links.
pub struct MediaLinks {
    key: Vec<u8>,
    public_url: String,
}

impl std::fmt::Debug for MediaLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaLinks").field("public_url", &self.public_url).finish_non_exhaustive()
    }
}

impl MediaLinks {
    /// The key is derived from the app secret, so every instance signs alike and links survive
    /// restarts; `public_url` is where clients reach the bridge.
    pub fn new(app_secret: &str, public_url: &str) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("any key length");
        mac.update(b"wechat-bridge media links v1");
        Self { key: mac.finalize().into_bytes().to_vec(), public_url: public_url.trim_end_matches('/').to_string() }
    }

    /// A link to `media_id` valid until `now + LINK_TTL_SECS`.
    pub fn url(&self, media_id: &str, now_secs: i64) -> String {
        let expires = now_secs + LINK_TTL_SECS;
        format!("{}/media/{}?expires={expires}&sig={}", self.public_url, crate::urlencode(media_id), self.sign(media_id, expires))
    }

    fn sign(&self, media_id: &str, expires: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(format!("{media_id}\n{expires}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `sig` signs `media_id` until `expires`, and that time has not passed.
    pub fn check(&self, media_id: &str, expires: i64, sig: &str, now_secs: i64) -> Result<(), &'static str> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(format!("{media_id}\n{expires}").as_bytes());
        let sig = hex::decode(sig).map_err(|_| "bad signature")?;
        mac.verify_slice(&sig).map_err(|_| "bad signature")?;
        if expires < now_secs { Err("link expired") } else { Ok(()) }
    }
}

#[derive(Deserialize)]
pub struct LinkQuery {
    expires: Option<i64>,
    sig: Option<String>,
}

/// What `GET /media/{id}` needs: the link signer (absent without BRIDGE_PUBLIC_URL), the cache,
/// and the client that downloads from WeChat.
#[derive(Clone, Debug)]
struct MediaState {
    links: Option<Arc<MediaLinks>>,
    store: Store,
    client: Arc<WeChatClient>,
}

/// `GET /media/{media_id}`.
pub fn routes<S: Clone + Send + Sync + 'static>(
    links: Option<Arc<MediaLinks>>,
    store: Store,
    client: Arc<WeChatClient>,
) -> Router<S> {
    Router::new().route("/media/{media_id}", get(serve_media)).with_state(MediaState { links, store, client })
}

/// Serves a media file to the holder of a valid link.
async fn serve_media(State(state): State<MediaState>, Path(media_id): Path<String>, Query(q): Query<LinkQuery>) -> Response {
    let Some(links) = &state.links else {
        return (StatusCode::NOT_FOUND, "media links need BRIDGE_PUBLIC_URL").into_response();
    };
    let (Some(expires), Some(sig)) = (q.expires, q.sig) else {
        return (StatusCode::UNAUTHORIZED, "missing expires or sig").into_response();
    };
    let now = crate::store::now_ms() / 1000;
    if let Err(why) = links.check(&media_id, expires, &sig, now) {
        let status = if why == "link expired" { StatusCode::GONE } else { StatusCode::UNAUTHORIZED };
        return (status, why).into_response();
    }
    let cached = match state.store.cached_media(&media_id).await {
        Ok(c) => c,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let (content_type, bytes) = match cached {
        Some(hit) => hit,
        None => match state.client.download_media(&media_id).await {
            Ok((content_type, bytes)) => {
                if let Err(e) = state.store.cache_media(&media_id, &content_type, &bytes).await {
                    tracing::warn!(error = %e, "media not cached");
                }
                (content_type, bytes)
            }
            Err(e) if e.is_retryable() => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            Err(e) => return (StatusCode::NOT_FOUND, e.to_string()).into_response(),
        },
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "private, max-age=86400".to_string())], bytes).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_until_they_expire_and_not_for_other_media() {
        let links = MediaLinks::new("secret", "https://bridge.example/");
        let url = links.url("MEDIA_1", 1_000);
        assert!(url.starts_with("https://bridge.example/media/MEDIA_1?expires="));
        let expires = 1_000 + LINK_TTL_SECS;
        let sig = url.split("sig=").nth(1).unwrap();
        assert_eq!(links.check("MEDIA_1", expires, sig, 2_000), Ok(()));
        assert_eq!(links.check("MEDIA_2", expires, sig, 2_000), Err("bad signature"));
        assert_eq!(links.check("MEDIA_1", expires + 1, sig, 2_000), Err("bad signature"));
        assert_eq!(links.check("MEDIA_1", expires, sig, expires + 1), Err("link expired"));
        assert_eq!(MediaLinks::new("other", "https://b").check("MEDIA_1", expires, sig, 2_000), Err("bad signature"));
    }
}
