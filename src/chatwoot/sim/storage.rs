//! Attachment files the way ActiveStorage serves them (`chatwoot-api.md §2.3`, §3.3): a
//! `data_url` `…/rails/active_storage/blobs/redirect/{signed_id}/{filename}` that redirects
//! (302) to `…/rails/active_storage/disk/{key}/{filename}`, which serves the bytes. Neither
//! needs a token: the signed id is the credential. Also the MIME → `file_type` rule.

use std::sync::Arc;

use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::Inner;
use super::routes::base_url;
use crate::urlencode;

type Sim = AxState<Arc<Inner>>;

/// `FileTypeHelper#file_type` (§2.3): a few image and video types, any audio, else `file`.
pub(crate) fn file_type(content_type: &str) -> &'static str {
    let ct = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match ct.as_str() {
        "image/jpeg" | "image/jpg" | "image/png" | "image/gif" | "image/bmp" | "image/webp" => "image",
        "video/ogg" | "video/mp4" | "video/webm" | "video/quicktime" => "video",
        a if a.starts_with("audio/") => "audio",
        _ => "file",
    }
}

/// The file name's extension, without the dot.
pub(crate) fn extension(filename: &str) -> Option<String> {
    let (stem, ext) = filename.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_owned())
}

/// A blob signed id shaped like Rails' (`base64(json)--digest`); only its exact text finds
/// the blob.
pub(crate) fn signed_id(blob_id: u64) -> String {
    let data =
        base64::engine::general_purpose::STANDARD.encode(format!("{{\"_rails\":{{\"data\":{blob_id},\"pur\":\"blob_id\"}}}}"));
    let digest = format!("{}{}", uuid::Uuid::new_v4().simple(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
    format!("{data}--{digest}")
}

/// A storage key like ActiveStorage's: 28 lowercase base-36 characters.
pub(crate) fn disk_key() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = uuid::Uuid::new_v4().as_bytes().to_vec();
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.iter().take(28).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}

fn redirect(inner: &Inner, headers: &HeaderMap, signed_id: &str) -> Response {
    let found = inner.read(|st| {
        st.attachments
            .iter()
            .find(|a| a.signed_id == signed_id)
            .map(|a| (a.key.clone(), a.file.filename.clone(), a.file.content_type.clone()))
    });
    let Some((key, filename, content_type)) = found else { return not_found() };
    let location = format!(
        "{}/rails/active_storage/disk/{key}/{}?content_type={}&disposition=inline",
        base_url(headers),
        urlencode(&filename),
        urlencode(&content_type)
    );
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `GET /rails/active_storage/blobs/redirect/{signed_id}/{filename}`.
pub(super) async fn blob_redirect(
    AxState(inner): Sim,
    headers: HeaderMap,
    Path((signed_id, _name)): Path<(String, String)>,
) -> Response {
    redirect(&inner, &headers, &signed_id)
}

/// `GET /rails/active_storage/representations/redirect/{signed_id}/{variation}/{filename}`: the
/// thumbnail; the simulator serves the original image.
pub(super) async fn representation_redirect(
    AxState(inner): Sim,
    headers: HeaderMap,
    Path((signed_id, _variation, _name)): Path<(String, String, String)>,
) -> Response {
    redirect(&inner, &headers, &signed_id)
}

/// `GET /rails/active_storage/disk/{key}/{filename}`: the bytes, with their content type.
pub(super) async fn disk_file(AxState(inner): Sim, Path((key, _name)): Path<(String, String)>) -> Response {
    let Some(file) = inner.read(|st| st.attachments.iter().find(|a| a.key == key).map(|a| a.file.clone())) else {
        return not_found();
    };
    let mut resp = (StatusCode::OK, file.bytes).into_response();
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&file.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    let disposition = format!("inline; filename*=UTF-8''{}", urlencode(&file.filename));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_types_follow_the_mime_rule() {
        assert_eq!(file_type("image/png"), "image");
        assert_eq!(file_type("image/svg+xml"), "file");
        assert_eq!(file_type("audio/amr"), "audio");
        assert_eq!(file_type("video/mp4"), "video");
        assert_eq!(file_type("video/x-msvideo"), "file");
        assert_eq!(file_type("application/pdf"), "file");
        assert_eq!(extension("a.b.png").as_deref(), Some("png"));
        assert_eq!(extension("README"), None);
    }
}
