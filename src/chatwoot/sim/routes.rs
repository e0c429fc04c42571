//! HTTP side of the simulator: the routes, the request log and injected faults in front of
//! `/api`, body parsing (JSON, form or multipart, as Rails takes any of them), and the thin
//! `/api/v1` handlers (the logic is in `State`). Downloads are in `storage.rs`, `/_sim` in
//! `control.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use serde_json::{Map, Value, json};

use super::auth::{Endpoint, guard};
use super::control;
use super::error::ApiError;
use super::messages::NewMessage;
use super::model::Principal;
use super::{Inner, SimFile, storage};

pub(super) type Sim = AxState<Arc<Inner>>;
type Q = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

/// Larger than any attachment the bridge sends; Chatwoot itself allows 40 MB by default.
const BODY_LIMIT: usize = 64 * 1024 * 1024;
/// `RATE_LIMIT_CONTACT_SEARCH` per account per minute (§4.1).
const SEARCHES_PER_MINUTE: usize = 100;

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    const ACC: &str = "/api/v1/accounts/{account_id}";
    let api = Router::new()
        .route("/api/v1/profile", get(profile))
        .route(&format!("{ACC}/inboxes/{{id}}"), get(show_inbox).patch(update_inbox).put(update_inbox))
        .route(&format!("{ACC}/contacts"), post(create_contact))
        .route(&format!("{ACC}/contacts/filter"), post(filter_contacts))
        .route(&format!("{ACC}/contacts/search"), get(search_contacts))
        .route(&format!("{ACC}/contacts/{{id}}"), get(show_contact))
        .route(&format!("{ACC}/contacts/{{id}}/contact_inboxes"), post(create_contact_inbox))
        .route(&format!("{ACC}/contacts/{{id}}/conversations"), get(contact_conversations))
        .route(&format!("{ACC}/conversations"), post(create_conversation))
        .route(&format!("{ACC}/conversations/{{id}}"), get(show_conversation))
        .route(&format!("{ACC}/conversations/{{id}}/toggle_status"), post(toggle_status))
        .route(&format!("{ACC}/conversations/{{id}}/messages"), get(list_messages).post(create_message))
        .route(
            &format!("{ACC}/conversations/{{id}}/messages/{{message_id}}"),
            patch(patch_message).put(patch_message).delete(destroy_message),
        )
        .route_layer(middleware::from_fn_with_state(inner.clone(), api_gate));
    Router::new()
        .merge(api)
        .route("/rails/active_storage/blobs/redirect/{signed_id}/{filename}", get(storage::blob_redirect))
        .route(
            "/rails/active_storage/representations/redirect/{signed_id}/{variation}/{filename}",
            get(storage::representation_redirect),
        )
        .route("/rails/active_storage/disk/{key}/{filename}", get(storage::disk_file))
        .route("/_sim/state", get(control::state))
        .route("/_sim/faults", post(control::faults))
        .route("/_sim/webhook_url", put(control::webhook_url))
        .route("/_sim/conversations/{id}/reply", post(control::reply))
        .route("/_sim/conversations/{id}/resolve", post(control::resolve))
        .route("/_sim/messages/{id}/retry", post(control::retry))
        .route("/_sim/messages/{id}/delete", post(control::delete))
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(inner.clone(), record_request))
        .with_state(inner)
}

/// `http://<Host>`: the base of the links the simulator makes.
pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

/// Logs every API request (not `/_sim`, not downloads) and remembers the Host.
async fn record_request(AxState(inner): Sim, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if !path.starts_with("/_sim") && !path.starts_with("/rails/") {
        let mut meta = inner.meta();
        meta.requests.push((req.method().as_str().to_owned(), path));
        meta.last_base = Some(base_url(req.headers()));
    }
    next.run(req).await
}

/// In front of every API route, like a proxy or the middleware stack: an outage, then queued
/// failures, each answered without touching any data.
async fn api_gate(AxState(inner): Sim, req: Request, next: Next) -> Response {
    let injected = {
        let mut meta = inner.meta();
        if meta.faults.down { Some(503) } else { meta.faults.fail_queue.pop_front() }
    };
    if let Some(status) = injected {
        return ApiError::injected(status).into_response();
    }
    let response = next.run(req).await;
    // The request was handled (and its data saved), but the answer never reaches the caller:
    // a proxy timing out after Rails committed.
    let lost = inner.meta().faults.lose_answers.checked_sub(1);
    match lost {
        Some(left) => {
            inner.meta().faults.lose_answers = left;
            ApiError::injected(504).into_response()
        }
        None => response,
    }
}

async fn no_route() -> ApiError {
    ApiError::no_route()
}

fn reply(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A path id. Rails casts it; anything that is not a number finds nothing (404).
fn path_id(s: &str) -> Result<u64, ApiError> {
    s.trim().parse().map_err(|_| ApiError::not_found())
}

fn query_pairs(q: Q) -> Vec<(String, String)> {
    q.map(|Query(v)| v).unwrap_or_default()
}

fn page_of(pairs: &[(String, String)], body: Option<&Value>) -> usize {
    let from_query = pairs.iter().rev().find(|(k, _)| k == "page").map(|(_, v)| v.clone());
    let raw = from_query.or_else(|| body.and_then(|b| super::model::str_param(b, "page"))).unwrap_or_default();
    super::conversations::ruby_to_i(&raw).max(1) as usize
}

/// Request parameters from a JSON or form body (an empty body is no parameters). A body
/// that does not parse is Rails' 400.
pub(crate) fn body_params(headers: &HeaderMap, bytes: &Bytes) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    if ct.starts_with("application/x-www-form-urlencoded") {
        let text = std::str::from_utf8(bytes).map_err(|_| ApiError::bad_request())?;
        let url = reqwest::Url::parse(&format!("http://form.invalid/?{text}")).map_err(|_| ApiError::bad_request())?;
        return Ok(Value::Object(url.query_pairs().map(|(k, v)| (k.into_owned(), json!(v.into_owned()))).collect()));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Ok(json!({})),
        Err(_) => Err(ApiError::bad_request()),
    }
}

/// `POST …/messages` as `multipart/form-data`: repeated `attachments[]` file parts plus text
/// fields (`content`, `message_type`, `private`, `source_id`, `echo_id`, …, §2.3).
async fn multipart_message(req: Request) -> Result<NewMessage, ApiError> {
    let mut form = Multipart::from_request(req, &()).await.map_err(|_| ApiError::bad_request())?;
    let mut fields = Map::new();
    let mut files = Vec::new();
    let mut unsigned = false;
    while let Some(field) = form.next_field().await.map_err(|_| ApiError::bad_request())? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "attachments[]" || name == "attachments" {
            match field.file_name().map(str::to_owned) {
                Some(filename) => {
                    let content_type = field.content_type().unwrap_or("application/octet-stream").to_owned();
                    let bytes = field.bytes().await.map_err(|_| ApiError::bad_request())?;
                    files.push(SimFile { filename, content_type, bytes: bytes.to_vec() });
                }
                None => {
                    field.bytes().await.map_err(|_| ApiError::bad_request())?;
                    unsigned = true;
                }
            }
            continue;
        }
        let text = field.text().await.map_err(|_| ApiError::bad_request())?;
        let value = match name.as_str() {
            // A JSON text in a form field is still a string to Rails; take an object if it is one.
            "content_attributes" => serde_json::from_str::<Value>(&text).ok().filter(Value::is_object).unwrap_or(Value::Null),
            _ => json!(text),
        };
        fields.insert(name, value);
    }
    let mut new = NewMessage::from_json(&Value::Object(fields));
    new.files = files;
    new.unsigned_attachments = unsigned;
    Ok(new)
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"))
}

// ---- /api/v1 handlers -------------------------------------------------------------------------

async fn profile(AxState(inner): Sim, headers: HeaderMap) -> Response {
    reply((|| {
        let Principal::User(id) = guard(&inner, &headers, None, Endpoint::Profile)? else {
            return Err(ApiError::bots_not_allowed());
        };
        inner.read(|st| st.user(id).map(|u| st.profile_json(u)).ok_or_else(ApiError::invalid_token))
    })())
}

async fn show_inbox(AxState(inner): Sim, headers: HeaderMap, Path((account, id)): Path<(String, String)>) -> Response {
    reply((|| {
        let p = guard(&inner, &headers, Some(&account), Endpoint::InboxShow)?;
        let id = path_id(&id)?;
        inner.read(|st| st.show_inbox(p, id))
    })())
}

async fn update_inbox(
    AxState(inner): Sim,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    reply((|| {
        let p = guard(&inner, &headers, Some(&account), Endpoint::InboxUpdate)?;
        let id = path_id(&id)?;
        let body = body_params(&headers, &body)?;
        inner.apply(|st| st.update_inbox(p, id, &body))
    })())
}

async fn create_contact(AxState(inner): Sim, headers: HeaderMap, Path(account): Path<String>, body: Bytes) -> Response {
    reply((|| {
        let p = guard(&inner, &headers, Some(&account), Endpoint::ContactsCreate)?;
        let body = body_params(&headers, &body)?;
        inner.apply(|st| st.create_contact(p, &body))
    })())
}

async fn show_contact(AxState(inner): Sim, headers: HeaderMap, Path((account, id)): Path<(String, String)>) -> Response {
    reply((|| {
        let p = guard(&inner, &headers, Some(&account), Endpoint::ContactsShow)?;
        let id = path_id(&id)?;
        inner.read(|st| st.show_contact(p, id))
    })())
}

async fn filter_contacts(AxState(inner): Sim, headers: HeaderMap, Path(account): Path<String>, q: Q, body: Bytes) -> Response {
    reply((|| {
        let p = guard(&inner, &headers, Some(&account), Endpoint::ContactsFilter)?;
        let body = body_params(&headers, &body)?;
        let page = page_of(&query_pairs(q), Some(&body));
        inner.read(|st| st.filter_contacts(p, &body, page))
    })())
}

async fn search_contacts(AxState(inner): Sim, headers: HeaderMap, Path(account): Path<String>, q: Q) -> Response {
    // rack-attack runs before the app and counts every call (§4.1). The real one safelists
    // 127.0.0.1 and uses a clock-aligned minute; the simulator throttles everyone, rolling.
    {
        let mut meta = inner.meta();
        let now = Instant::now();
        while meta.searches.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
            meta.searches.pop_front();
        }
        meta.searches.push_back(now);
        if meta.searches.len() > SEARCHES_PER_MINUTE {
            return ApiError::throttled().into_response();
        }
    }
    let pairs = query_pairs(q);
    reply((|| {
        let p = guard(&inner, &headers, Some(&account), Endpoint::ContactsSearch)?;
        let q = pairs.iter().rev().find(|(k, _)| k == "q").map(|(_, v)| v.as_str());
        inner.read(|st| st.search_contacts(p, q, page_of(&pairs, None)))
    })())
}

async fn create_contact_inbox(
    AxState(inner): Sim,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    reply((|| {
        let p = guard(&inner, &headers, Some(&account), Endpoint::ContactInboxesCreate)?;
        let id = path_id(&id)?;
        let body = body_params(&headers, &body)?;
        inner.apply(|st| st.create_contact_inbox(p, id, &body))
    })())
}

async fn contact_conversations(AxState(inner): Sim, headers: HeaderMap, Path((account, id)): Path<(String, String)>) -> Response {
    reply((|| {
        let p = guard(&inner, &headers, Some(&account), Endpoint::ContactConversations)?;
        let id = path_id(&id)?;
        inner.read(|st| st.contact_conversations(p, id))
    })())
}

async fn create_conversation(AxState(inner): Sim, headers: HeaderMap, Path(account): Path<String>, body: Bytes) -> Response {
    reply((|| {
        let p = guard(&inner, &headers, Some(&account), Endpoint::ConversationsCreate)?;
        let body = body_params(&headers, &body)?;
        let base = base_url(&headers);
        inner.apply(|st| st.create_conversation(p, &body, &base))
    })())
}

async fn show_conversation(AxState(inner): Sim, headers: HeaderMap, Path((account, id)): Path<(String, String)>) -> Response {
    reply((|| {
        let p = guard(&inner, &headers, Some(&account), Endpoint::ConversationsShow)?;
        let id = path_id(&id)?;
        inner.read(|st| st.show_conversation(p, id))
    })())
}

async fn toggle_status(
    AxState(inner): Sim,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    reply((|| {
        let p = guard(&inner, &headers, Some(&account), Endpoint::ConversationsToggleStatus)?;
        let id = path_id(&id)?;
        let body = body_params(&headers, &body)?;
        inner.apply(|st| st.toggle_status(p, id, &body))
    })())
}

async fn list_messages(AxState(inner): Sim, headers: HeaderMap, Path((account, id)): Path<(String, String)>, q: Q) -> Response {
    reply((|| {
        let p = guard(&inner, &headers, Some(&account), Endpoint::MessagesIndex)?;
        let id = path_id(&id)?;
        inner.read(|st| st.list_messages(p, id, &query_pairs(q)))
    })())
}

async fn create_message(AxState(inner): Sim, Path((account, id)): Path<(String, String)>, req: Request) -> Response {
    let headers = req.headers().clone();
    let result = async {
        let p = guard(&inner, &headers, Some(&account), Endpoint::MessagesCreate)?;
        let id = path_id(&id)?;
        let new = if is_multipart(&headers) {
            multipart_message(req).await?
        } else {
            let bytes = axum::body::to_bytes(req.into_body(), BODY_LIMIT).await.map_err(|_| ApiError::bad_request())?;
            NewMessage::from_json(&body_params(&headers, &bytes)?)
        };
        let base = base_url(&headers);
        inner.apply(|st| st.create_message(p, id, new, &base))
    }
    .await;
    reply(result)
}

async fn patch_message(
    AxState(inner): Sim,
    headers: HeaderMap,
    Path((account, id, message_id)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    reply((|| {
        let p = guard(&inner, &headers, Some(&account), Endpoint::MessagesUpdate)?;
        let (id, message_id) = (path_id(&id)?, path_id(&message_id)?);
        let body = body_params(&headers, &body)?;
        inner.apply(|st| st.patch_message(p, id, message_id, &body))
    })())
}

async fn destroy_message(
    AxState(inner): Sim,
    headers: HeaderMap,
    Path((account, id, message_id)): Path<(String, String, String)>,
) -> Response {
    reply((|| {
        let p = guard(&inner, &headers, Some(&account), Endpoint::MessagesDestroy)?;
        let (id, message_id) = (path_id(&id)?, path_id(&message_id)?);
        inner.apply(|st| st.destroy_message(p, id, message_id))
    })())
}
