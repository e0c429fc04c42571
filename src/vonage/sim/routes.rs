//! HTTP side of the simulator: routing, JWT auth, injected faults and the `/v1`
//! Conversation API handlers. The Application API and `/_sim` are in `control.rs`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Value, json};

use super::Inner;
use super::control::{get_application, post_faults, put_application, sim_create_agent, sim_post_event, sim_state};
use super::paging::Query as QueryPairs;
use super::problem::Problem;
use super::state::State;

pub(super) type Sim = AxState<Arc<Inner>>;
type Q = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;
pub(super) type ApiResult = Result<(StatusCode, Json<Value>), Problem>;

/// Longest accepted JWT lifetime, `exp - iat` (§1.1: "A maximum value of 24 hours").
const MAX_JWT_LIFETIME_SECS: u64 = 24 * 60 * 60;

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    let v1 = Router::new()
        .route("/v1/users", post(create_user).get(list_users))
        .route("/v1/users/{id}", get(get_user))
        .route("/v1/users/{id}/conversations", get(user_conversations))
        .route("/v1/conversations", post(create_conversation).get(list_conversations))
        .route("/v1/conversations/{id}", get(get_conversation))
        .route("/v1/conversations/{id}/members", post(create_member).get(list_members))
        .route("/v1/conversations/{id}/members/{member_id}", get(get_member))
        .route("/v1/conversations/{id}/events", post(create_event).get(list_events))
        .route("/v1/conversations/{id}/events/{event_id}", get(get_event))
        .route_layer(middleware::from_fn_with_state(inner.clone(), v1_gate));
    Router::new()
        .merge(v1)
        .route("/v2/applications/{id}", get(get_application).put(put_application))
        .route("/_sim/faults", post(post_faults))
        .route("/_sim/state", get(sim_state))
        .route("/_sim/agents", post(sim_create_agent))
        .route("/_sim/conversations/{id}/events", post(sim_post_event))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(inner.clone(), record_request))
        .with_state(inner)
}

pub(super) fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

/// Counts every non-`/_sim` request and remembers the Host for inspection links.
async fn record_request(AxState(inner): Sim, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if !path.starts_with("/_sim") {
        let mut meta = inner.meta();
        meta.requests.push((req.method().as_str().to_owned(), path));
        meta.last_base = Some(base_url(req.headers()));
    }
    next.run(req).await
}

/// In front of every `/v1` route: latency, down, JWT auth, then queued failures.
async fn v1_gate(AxState(inner): Sim, req: Request, next: Next) -> Response {
    let latency = inner.meta().faults.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if inner.meta().faults.down {
        return Problem::for_status(503).into_response();
    }
    if let Err(p) = verify_app_jwt(&inner, req.headers()) {
        return p.into_response();
    }
    let injected = inner.meta().faults.fail_queue.pop_front();
    if let Some((status, retry_after)) = injected {
        return Problem::for_status(status).with_retry_after(retry_after).into_response();
    }
    next.run(req).await
}

/// Verifies `Authorization: Bearer <JWT>` as the Conversation API does (§1.1): RS256
/// only, signed by the application's key, `application_id` = this application, `iat`,
/// `jti` and `exp` present, not expired, lifetime at most 24 h.
fn verify_app_jwt(inner: &Inner, headers: &HeaderMap) -> Result<(), Problem> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            let (scheme, token) = h.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(Problem::invalid_token)?;
    let header = jsonwebtoken::decode_header(token).map_err(|_| Problem::invalid_token())?;
    if header.alg != Algorithm::RS256 {
        return Err(Problem::invalid_token());
    }
    let mut validation = Validation::new(Algorithm::RS256);
    // Claims are checked below, so expiry can be told apart from other faults.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims: Value = {
        let meta = inner.meta();
        jsonwebtoken::decode::<Value>(token, &meta.decoding_key, &validation).map_err(|_| Problem::invalid_token())?.claims
    };
    let jti = claims.get("jti").and_then(Value::as_str).filter(|s| !s.is_empty());
    if let Some(jti) = jti {
        inner.meta().jwt_ids.push(jti.to_owned());
    }
    let app_ok = claims.get("application_id").and_then(Value::as_str) == Some(inner.cfg.application_id.as_str());
    let iat = claims.get("iat").and_then(Value::as_u64);
    let exp = claims.get("exp").and_then(Value::as_u64);
    let (Some(iat), Some(exp), Some(_), true) = (iat, exp, jti, app_ok) else {
        return Err(Problem::invalid_token());
    };
    let now = jsonwebtoken::get_current_timestamp();
    if exp <= now {
        return Err(Problem::expired_token());
    }
    if exp < iat || exp - iat > MAX_JWT_LIFETIME_SECS {
        return Err(Problem::invalid_token());
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64)
        && nbf > now + 60
    {
        return Err(Problem::invalid_token());
    }
    Ok(())
}

/// A JSON request body; an empty body reads as `{}` (every create field is optional
/// somewhere, and validation reports what is missing).
pub(super) fn json_body(bytes: &Bytes) -> Result<Value, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes).map_err(|e| Problem::invalid("body", format!("Request body is not valid JSON: {e}")))
}

fn query(q: Q) -> Result<Vec<(String, String)>, Problem> {
    q.map(|Query(v)| v).map_err(|e| Problem::invalid("query", e.body_text()))
}

fn ok(v: Value) -> ApiResult {
    Ok((StatusCode::OK, Json(v)))
}

pub(super) fn created(v: Value) -> ApiResult {
    Ok((StatusCode::CREATED, Json(v)))
}

// ---- /v1 handlers ----------------------------------------------------------------------

async fn create_user(AxState(inner): Sim, headers: HeaderMap, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    created(inner.mutate(|st| st.create_user(&body, &base_url(&headers)))?)
}

async fn list_users(AxState(inner): Sim, headers: HeaderMap, q: Q) -> ApiResult {
    let q = query(q)?;
    ok(inner.read(|st| st.list_users(&q, &base_url(&headers)))?)
}

async fn get_user(AxState(inner): Sim, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    ok(inner.read(|st| st.user(&id).map(|u| st.user_json(u, &base_url(&headers))).ok_or_else(Problem::user_not_found))?)
}

async fn user_conversations(AxState(inner): Sim, headers: HeaderMap, Path(id): Path<String>, q: Q) -> ApiResult {
    let q = query(q)?;
    ok(inner.read(|st| st.user_conversations(&id, &q, &base_url(&headers)))?)
}

async fn create_conversation(AxState(inner): Sim, headers: HeaderMap, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    created(inner.mutate(|st| st.create_conversation(&body, &base_url(&headers)))?)
}

async fn list_conversations(AxState(inner): Sim, headers: HeaderMap, q: Q) -> ApiResult {
    let q = query(q)?;
    ok(inner.read(|st| st.list_conversations(&q, &base_url(&headers)))?)
}

async fn get_conversation(AxState(inner): Sim, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    ok(inner.read(|st| st.conversation(&id).map(|c| State::conversation_json(c, &base_url(&headers))))?)
}

async fn create_member(AxState(inner): Sim, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    created(inner.mutate(|st| st.create_member(&id, &body, &base_url(&headers)))?)
}

async fn list_members(AxState(inner): Sim, headers: HeaderMap, Path(id): Path<String>, q: Q) -> ApiResult {
    let q = query(q)?;
    ok(inner.read(|st| st.list_members(&id, &q, &base_url(&headers)))?)
}

async fn get_member(AxState(inner): Sim, headers: HeaderMap, Path((id, member_id)): Path<(String, String)>) -> ApiResult {
    ok(inner.read(|st| {
        let c = st.conversation(&id)?;
        let m = c.members.iter().find(|m| m.id == member_id).ok_or_else(Problem::member_not_found)?;
        Ok::<_, Problem>(st.member_json(c, m, &base_url(&headers)))
    })?)
}

async fn create_event(AxState(inner): Sim, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    created(inner.mutate(|st| st.create_event(&id, &body, &base_url(&headers)))?)
}

async fn list_events(AxState(inner): Sim, headers: HeaderMap, Path(id): Path<String>, q: Q) -> ApiResult {
    let q: Vec<(String, String)> = query(q)?;
    let q: &QueryPairs = &q;
    ok(inner.read(|st| st.list_events(&id, q, &base_url(&headers)))?)
}

async fn get_event(AxState(inner): Sim, headers: HeaderMap, Path((id, event_id)): Path<(String, String)>) -> ApiResult {
    ok(inner.read(|st| {
        let c = st.conversation(&id)?;
        let e = event_id
            .parse::<u64>()
            .ok()
            .and_then(|eid| c.events.iter().find(|e| e.id == eid))
            .ok_or_else(Problem::event_not_found)?;
        Ok::<_, Problem>(st.event_json(c, e, &base_url(&headers)))
    })?)
}

async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "Not Found", "http:error:not-found", "The requested resource does not exist.")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
        "http:error:method-not-allowed",
        "Request method not supported.",
    )
}
