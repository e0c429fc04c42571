//! The non-Conversation endpoints: the Application API (`/v2/applications/{id}`, Basic
//! auth, used by `wechat-bridge setup`, `vonage-api.md §3.1`) and the simulator's own
//! `/_sim` control endpoints (faults, state, agent actions).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::problem::Problem;
use super::routes::{ApiResult, Sim, base_url, created, json_body};
use super::state::State;
use super::{Faults, Inner, create_agent_in};

// ---- Application API (v2) --------------------------------------------------------------

/// Application API errors: RFC 7807 without `code`, `type` under `/api-errors`.
fn app_problem(status: StatusCode, kind: &str, title: &str, detail: &str) -> Problem {
    let mut p = Problem::new(status, title, "", detail);
    p.code = None;
    p.type_url = Some(format!("https://developer.nexmo.com/api-errors#{kind}"));
    p
}

/// Guards the Application API: `Authorization: Basic base64(api_key:api_secret)` (§3.1)
/// and this application's id. Returns the rejection, if any.
fn app_guard(inner: &Inner, headers: &HeaderMap, id: &str) -> Option<Response> {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            let (scheme, b64) = h.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(b64.trim())
        })
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|pair| pair == format!("{}:{}", inner.cfg.api_key, inner.cfg.api_secret));
    if !authorized {
        let mut resp = app_problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid credentials supplied",
            "You did not provide correct credentials.",
        )
        .into_response();
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Vonage\""));
        return Some(resp);
    }
    if id != inner.cfg.application_id {
        return Some(
            app_problem(StatusCode::NOT_FOUND, "not-found", "Not Found", &format!("Application {id} could not be found"))
                .into_response(),
        );
    }
    None
}

fn application_json(inner: &Inner, headers: &HeaderMap) -> Value {
    let mut app = inner.meta().application.clone();
    app["_links"] = json!({"self": {"href": format!("{}/v2/applications/{}", base_url(headers), inner.cfg.application_id)}});
    app
}

pub(super) async fn get_application(AxState(inner): Sim, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(rejection) = app_guard(&inner, &headers, &id) {
        return rejection;
    }
    Json(application_json(&inner, &headers)).into_response()
}

/// `PUT /v2/applications/{id}`: `name` required; `capabilities` replaced wholesale as
/// given, PUT semantics (§3.1 warning: sending only `rtc` drops `voice`); the RTC
/// `event_url` in it becomes the webhook address.
pub(super) async fn put_application(AxState(inner): Sim, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    if let Some(rejection) = app_guard(&inner, &headers, &id) {
        return rejection;
    }
    let invalid = |name: &str, reason: &str| {
        let mut p =
            app_problem(StatusCode::BAD_REQUEST, "invalid-params", "Bad Request", "The request failed due to validation errors");
        p.invalid_parameters = vec![(name.to_owned(), reason.to_owned())];
        p.into_response()
    };
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&body) else {
        return invalid("body", "Must be a JSON object.");
    };
    let Some(name) = req.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        return invalid("name", "Is required.");
    };
    let capabilities = match req.get("capabilities") {
        None | Some(Value::Null) => json!({}),
        Some(c @ Value::Object(_)) => c.clone(),
        Some(_) => return invalid("capabilities", "Must be an object."),
    };
    let url = capabilities.pointer("/rtc/webhooks/event_url/address").and_then(Value::as_str).map(str::to_owned);
    {
        let mut meta = inner.meta();
        meta.application["name"] = json!(name);
        meta.application["capabilities"] = capabilities;
        if let Some(pk) = req.get("keys").and_then(|k| k.get("public_key")).and_then(Value::as_str) {
            match jsonwebtoken::DecodingKey::from_rsa_pem(pk.as_bytes()) {
                Ok(key) => {
                    meta.decoding_key = key;
                    meta.application["keys"]["public_key"] = json!(pk);
                }
                Err(_) => {
                    drop(meta);
                    return invalid("keys.public_key", "Must be a valid RSA public key in PEM format.");
                }
            }
        }
        if let Some(privacy) = req.get("privacy") {
            meta.application["privacy"] = privacy.clone();
        }
    }
    inner.rtc.set_url(url);
    Json(application_json(&inner, &headers)).into_response()
}

// ---- /_sim control endpoints -----------------------------------------------------------

/// `POST /_sim/faults` with any of `{"fail_next": n, "status": s, "retry_after": secs}`,
/// `{"latency_ms": ms}`, `{"down": bool}`, `{"clear": true}`.
pub(super) async fn post_faults(AxState(inner): Sim, body: Bytes) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": "expected a JSON object"}))).into_response();
        }
    };
    let mut meta = inner.meta();
    if req.get("clear").and_then(Value::as_bool) == Some(true) {
        meta.faults = Faults::default();
    }
    if let Some(n) = req.get("fail_next").and_then(Value::as_u64) {
        let status = req.get("status").and_then(Value::as_u64).unwrap_or(503);
        if !(400..=599).contains(&status) {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": "status must be 400..=599"}))).into_response();
        }
        let retry_after = req.get("retry_after").and_then(Value::as_u64);
        for _ in 0..n {
            meta.faults.fail_queue.push_back((status as u16, retry_after));
        }
    }
    if let Some(ms) = req.get("latency_ms").and_then(Value::as_u64) {
        meta.faults.latency = Duration::from_millis(ms);
    }
    if let Some(down) = req.get("down").and_then(Value::as_bool) {
        meta.faults.down = down;
    }
    Json(faults_json(&meta.faults)).into_response()
}

fn faults_json(f: &Faults) -> Value {
    json!({
        "fail_next": f.fail_queue.iter().map(|(s, r)| json!({"status": s, "retry_after": r})).collect::<Vec<_>>(),
        "latency_ms": f.latency.as_millis() as u64,
        "down": f.down,
    })
}

/// `GET /_sim/state`: application, users, conversations with members and events, RTC
/// delivery counters and faults.
pub(super) async fn sim_state(AxState(inner): Sim, headers: HeaderMap) -> Json<Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let base = base_url(&headers);
    let (users, conversations) = inner.read(|st| {
        let users: Vec<Value> = st.users.iter().map(|u| st.user_json(u, &base)).collect();
        let convs: Vec<Value> = st
            .conversations
            .iter()
            .map(|c| {
                let mut v = State::conversation_json(c, &base);
                v["members"] = c.members.iter().map(|m| st.member_json(c, m, &base)).collect();
                v["events"] = c.events.iter().map(|e| st.event_json(c, e, &base)).collect();
                v
            })
            .collect();
        (users, convs)
    });
    let shared = &inner.rtc.shared;
    let meta = inner.meta();
    Json(json!({
        "application": meta.application,
        "users": users,
        "conversations": conversations,
        "rtc": {
            "event_url": inner.rtc.url(),
            "signed": shared.signature_secret.is_some(),
            "attempts": shared.attempts.load(Relaxed),
            "delivered": shared.delivered.load(Relaxed),
            "dropped": shared.dropped.load(Relaxed),
        },
        "faults": faults_json(&meta.faults),
        "jwt_count": meta.jwt_ids.len(),
    }))
}

/// `POST /_sim/agents {"name", "conversation_id"}` → `{"member_id"}`: play an agent.
pub(super) async fn sim_create_agent(AxState(inner): Sim, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, Problem> {
    let req = json_body(&body)?;
    let (Some(name), Some(conv_id)) =
        (req.get("name").and_then(Value::as_str), req.get("conversation_id").and_then(Value::as_str))
    else {
        return Err(Problem::invalid("body", "\"name\" and \"conversation_id\" are required"));
    };
    let member_id = inner.mutate(|st| create_agent_in(st, name, conv_id, &base_url(&headers)))?;
    Ok(Json(json!({"member_id": member_id})))
}

/// `POST /_sim/conversations/{id}/events`: store an event as a client SDK would,
/// without a JWT (see `VonageSim::post_event_as_client`).
pub(super) async fn sim_post_event(AxState(inner): Sim, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    created(inner.mutate(|st| st.create_event(&id, &body, &base_url(&headers)))?)
}
