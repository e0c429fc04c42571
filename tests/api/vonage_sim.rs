//! Black-box tests of the Vonage simulator over real HTTP: the router served on
//! 127.0.0.1:0, called with reqwest, RTC webhooks caught by a local axum receiver.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wechat_bridge::vonage::sim::keys::generate_rsa_keypair;
use wechat_bridge::vonage::sim::{VonageSim, VonageSimConfig};

const APP_ID: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
const SECRET: &str = "a-signature-secret-of-some-length";

fn keys() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(generate_rsa_keypair)
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// An RS256 application JWT like the SDKs mint (§1.2), with `extra` merged into the claims.
fn jwt_with(private_pem: &str, extra: Value) -> String {
    let mut claims = json!({
        "application_id": APP_ID,
        "iat": now(),
        "jti": uuid::Uuid::new_v4().to_string(),
        "exp": now() + 900,
        "acl": {"paths": {"/*/users/**": {}, "/*/conversations/**": {}}},
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap())
        .unwrap()
}

fn jwt() -> String {
    jwt_with(&keys().0, json!({}))
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

struct Harness {
    sim: VonageSim,
    base: String,
    http: reqwest::Client,
}

impl Harness {
    async fn start(tweak: impl FnOnce(&mut VonageSimConfig)) -> Harness {
        let mut cfg = VonageSimConfig::new(APP_ID, keys().1.clone());
        cfg.api_key = "key123".into();
        cfg.api_secret = "secret456".into();
        cfg.rtc_retry_base = Duration::from_millis(50);
        tweak(&mut cfg);
        let sim = VonageSim::new(cfg);
        let base = serve(sim.router()).await;
        Harness { sim, base, http: reqwest::Client::new() }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, HeaderMap, Value) {
        self.call_with_token(method, path, body, &jwt()).await
    }

    async fn call_with_token(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: &str,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let json = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        (status, headers, json)
    }

    async fn conversation(&self, name: &str) -> String {
        let (s, _, c) = self.call("POST", "/v1/conversations", Some(json!({"name": name}))).await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        c["id"].as_str().unwrap().to_owned()
    }

    /// A user joined to `conv`; returns (user id, member id).
    async fn joined(&self, conv: &str, name: &str) -> (String, String) {
        let (_, _, u) = self.call("POST", "/v1/users", Some(json!({"name": name}))).await;
        let uid = u["id"].as_str().unwrap().to_owned();
        let (s, _, m) = self
            .call(
                "POST",
                &format!("/v1/conversations/{conv}/members"),
                Some(json!({"user": {"id": uid}, "state": "joined", "channel": {"type": "app"}})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{m}");
        (uid, m["id"].as_str().unwrap().to_owned())
    }
}

fn assert_problem(status: StatusCode, headers: &HeaderMap, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["code"], code, "{body}");
    for key in ["type", "title", "detail", "instance"] {
        assert!(body[key].is_string(), "missing {key} in {body}");
    }
    assert!(body["type"].as_str().unwrap().ends_with(code));
}

// ---- auth ------------------------------------------------------------------------------

#[tokio::test]
async fn jwt_rules() {
    let h = Harness::start(|_| {}).await;
    let check = |token: String, code: &'static str| {
        let h = &h;
        async move {
            let (s, hd, b) = h.call_with_token("GET", "/v1/users", None, &token).await;
            assert_problem(s, &hd, &b, StatusCode::UNAUTHORIZED, code);
            b
        }
    };
    let body = check("not-a-jwt".into(), "system:error:invalid-token").await;
    assert_eq!(body["title"], "Unauthorized");
    assert_eq!(body["type"], "https://developer.vonage.com/api/conversation#system:error:invalid-token");
    assert_eq!(body["detail"], "You did not provide a valid token. Please provide a valid token.");
    assert!(uuid::Uuid::parse_str(body["instance"].as_str().unwrap()).is_ok());

    let (other_private, _) = generate_rsa_keypair();
    check(jwt_with(&other_private, json!({})), "system:error:invalid-token").await;
    check(jwt_with(&keys().0, json!({"application_id": "someone-else"})), "system:error:invalid-token").await;
    check(jwt_with(&keys().0, json!({"jti": null})), "system:error:invalid-token").await;
    check(jwt_with(&keys().0, json!({"iat": null})), "system:error:invalid-token").await;
    check(jwt_with(&keys().0, json!({"exp": null})), "system:error:invalid-token").await;
    // Lifetime over 24 h (§1.1).
    check(jwt_with(&keys().0, json!({"exp": now() + 25 * 3600})), "system:error:invalid-token").await;
    let expired =
        check(jwt_with(&keys().0, json!({"iat": now() - 1000, "exp": now() - 100})), "system:error:expired-token").await;
    assert_eq!(expired["detail"], "You provided an expired token. Please provide a valid token.");
    // HS256 with any secret is not an application JWT.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"application_id": APP_ID, "iat": now(), "jti": "x", "exp": now() + 60}),
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    check(hs, "system:error:invalid-token").await;
    let no_header = h.http.get(format!("{}/v1/users", h.base)).send().await.unwrap();
    assert_eq!(no_header.status(), 401);

    // A valid token passes, and its jti is recorded (twice when reused).
    let token = jwt_with(&keys().0, json!({"jti": "reused-jti"}));
    for _ in 0..2 {
        let (s, _, _) = h.call_with_token("GET", "/v1/users", None, &token).await;
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(h.sim.jwt_ids().iter().filter(|j| *j == "reused-jti").count(), 2);
}

// ---- users -----------------------------------------------------------------------------

#[tokio::test]
async fn users_create_duplicate_get_list() {
    let h = Harness::start(|_| {}).await;
    let (s, _, u) = h.call("POST", "/v1/users", Some(json!({"name": "wechat-bridge", "display_name": "WeChat"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let id = u["id"].as_str().unwrap();
    assert!(id.starts_with("USR-") && id.len() == 40, "{id}");
    assert_eq!(u["name"], "wechat-bridge");
    assert_eq!(u["display_name"], "WeChat");
    assert_eq!(u["properties"], json!({"custom_data": {}}));
    assert_eq!(u["_links"]["self"]["href"], format!("{}/v1/users/{id}", h.base));

    let (s, hd, b) = h.call("POST", "/v1/users", Some(json!({"name": "wechat-bridge"}))).await;
    assert_problem(s, &hd, &b, StatusCode::CONFLICT, "user:error:duplicate-name");

    let (s, _, list) = h.call("GET", "/v1/users?name=wechat-bridge", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["_embedded"]["users"][0]["id"], id);
    assert_eq!(list["_embedded"]["users"].as_array().unwrap().len(), 1);
    let (_, _, none) = h.call("GET", "/v1/users?name=nobody", None).await;
    assert_eq!(none["_embedded"]["users"], json!([]));

    let (s, _, got) = h.call("GET", &format!("/v1/users/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, u);
    let (s, hd, b) = h.call("GET", "/v1/users/USR-00000000-0000-0000-0000-000000000000", None).await;
    assert_problem(s, &hd, &b, StatusCode::NOT_FOUND, "user:error:not-found");

    // Unknown keys are rejected like the real validator does.
    let (s, hd, b) = h.call("POST", "/v1/users", Some(json!({"nmae": "typo"}))).await;
    assert_problem(s, &hd, &b, StatusCode::BAD_REQUEST, "http:error:validation-fail");
    assert_eq!(h.sim.users().len(), 1);
    assert_eq!(h.sim.request_count("POST", "/v1/users"), 3);
}

// ---- conversations ---------------------------------------------------------------------

#[tokio::test]
async fn conversations_create_conflict_validate_paginate() {
    let h = Harness::start(|_| {}).await;
    let (s, _, c) = h
        .call(
            "POST",
            "/v1/conversations",
            Some(json!({"name": "wechat-o1", "display_name": "Alice",
                        "properties": {"custom_data": {"wechat_openid": "o1"}}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = c["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("CON-") && id.len() == 40);
    assert_eq!(c["state"], "ACTIVE");
    assert_eq!(c["sequence_number"], 0);
    assert_eq!(c["properties"]["custom_data"]["wechat_openid"], "o1");
    assert!(humantime::parse_rfc3339(c["timestamp"]["created"].as_str().unwrap()).is_ok());

    let (s, hd, b) = h.call("POST", "/v1/conversations", Some(json!({"name": "wechat-o1"}))).await;
    assert_problem(s, &hd, &b, StatusCode::CONFLICT, "conversation:error:duplicate-name");
    assert_eq!(
        b["detail"],
        "The request failed because the conversation name already exists. Please provide a unique conversation name and try again."
    );

    let (s, hd, b) = h.call("POST", "/v1/conversations", Some(json!({"name": "n".repeat(101)}))).await;
    assert_problem(s, &hd, &b, StatusCode::BAD_REQUEST, "http:error:validation-fail");
    assert_eq!(b["invalid_parameters"][0]["name"], "name");
    let (s, hd, b) = h.call("POST", "/v1/conversations", Some(json!({"display_name": "d".repeat(51)}))).await;
    assert_problem(s, &hd, &b, StatusCode::BAD_REQUEST, "http:error:validation-fail");
    assert_eq!(b["invalid_parameters"][0]["name"], "display_name");
    // Exactly at the limits is fine.
    let (s, _, _) =
        h.call("POST", "/v1/conversations", Some(json!({"name": "n".repeat(100), "display_name": "d".repeat(50)}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _, _) = h.call("POST", "/v1/conversations", None).await;
    assert_eq!(s, StatusCode::CREATED, "unnamed conversations get a generated name");

    // Three conversations, pages of two.
    let (s, _, p1) = h.call("GET", "/v1/conversations?page_size=2", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p1["page_size"], 2);
    let first: Vec<&str> =
        p1["_embedded"]["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0], id);
    let next = p1["_links"]["next"]["href"].as_str().unwrap();
    assert!(next.starts_with(&format!("{}/v1/conversations?", h.base)) && next.contains("cursor="));
    let path = next.strip_prefix(&h.base).unwrap();
    let (_, _, p2) = h.call("GET", path, None).await;
    let second = p2["_embedded"]["conversations"].as_array().unwrap();
    assert_eq!(second.len(), 1);
    assert!(!first.contains(&second[0]["id"].as_str().unwrap()));
    assert!(p2["_links"].get("next").is_none(), "{}", p2["_links"]);

    let (s, hd, b) = h.call("GET", "/v1/conversations?page_size=101", None).await;
    assert_problem(s, &hd, &b, StatusCode::BAD_REQUEST, "http:error:validation-fail");

    let (s, _, got) = h.call("GET", &format!("/v1/conversations/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["name"], "wechat-o1");
    let (s, hd, b) = h.call("GET", "/v1/conversations/CON-nope", None).await;
    assert_problem(s, &hd, &b, StatusCode::NOT_FOUND, "conversation:error:not-found");
}

// ---- members ---------------------------------------------------------------------------

#[tokio::test]
async fn members_join_once() {
    let h = Harness::start(|_| {}).await;
    let conv = h.conversation("c-members").await;
    let (_, _, u) = h.call("POST", "/v1/users", Some(json!({"name": "bridge", "display_name": "Bridge"}))).await;
    let uid = u["id"].as_str().unwrap();
    let path = format!("/v1/conversations/{conv}/members");
    let req = json!({"user": {"id": uid}, "state": "joined", "channel": {"type": "app"}});

    let (s, _, m) = h.call("POST", &path, Some(req.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let mid = m["id"].as_str().unwrap();
    assert!(mid.starts_with("MEM-") && mid.len() == 40);
    assert_eq!(m["state"], "JOINED");
    assert_eq!(m["conversation_id"], conv);
    assert_eq!(m["_embedded"]["user"]["id"], uid);
    assert_eq!(m["_embedded"]["user"]["name"], "bridge");
    assert_eq!(m["channel"]["type"], "app");

    let (s, hd, b) = h.call("POST", &path, Some(req.clone())).await;
    assert_problem(s, &hd, &b, StatusCode::BAD_REQUEST, "conversation:error:member-already-joined");

    // By user name, as some live code does (§2.3).
    let (s, hd, b) =
        h.call("POST", &path, Some(json!({"user": {"name": "bridge"}, "state": "JOINED", "channel": {"type": "app"}}))).await;
    assert_problem(s, &hd, &b, StatusCode::BAD_REQUEST, "conversation:error:member-already-joined");

    let (s, hd, b) =
        h.call("POST", &path, Some(json!({"user": {"id": "USR-nope"}, "state": "joined", "channel": {"type": "app"}}))).await;
    assert_problem(s, &hd, &b, StatusCode::NOT_FOUND, "user:error:not-found");
    let (s, hd, b) = h.call("POST", "/v1/conversations/CON-nope/members", Some(req)).await;
    assert_problem(s, &hd, &b, StatusCode::NOT_FOUND, "conversation:error:not-found");
    let (s, hd, b) = h.call("POST", &path, Some(json!({"user": {"id": uid}, "channel": {"type": "app"}}))).await;
    assert_problem(s, &hd, &b, StatusCode::BAD_REQUEST, "http:error:validation-fail");
    let (s, hd, b) =
        h.call("POST", &path, Some(json!({"user": {"id": uid}, "state": "joined", "channel": {"type": "pigeon"}}))).await;
    assert_problem(s, &hd, &b, StatusCode::BAD_REQUEST, "http:error:validation-fail");

    let (s, _, list) = h.call("GET", &path, None).await;
    assert_eq!(s, StatusCode::OK);
    let members = list["_embedded"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["id"], mid);
    assert_eq!(members[0]["state"], "JOINED");
    assert_eq!(members[0]["_embedded"]["user"]["name"], "bridge");

    // Joining is itself an event.
    let events = h.sim.events(&conv);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "member:joined");
    assert_eq!(events[0]["id"], 1);
    assert_eq!(events[0]["from"], mid);

    let (_, _, uc) = h.call("GET", &format!("/v1/users/{uid}/conversations"), None).await;
    assert_eq!(uc["_embedded"]["conversations"][0]["id"], conv);
    assert_eq!(uc["_embedded"]["conversations"][0]["_embedded"]["member"]["id"], mid);
}

// ---- events ----------------------------------------------------------------------------

#[tokio::test]
async fn custom_event_rules() {
    let h = Harness::start(|_| {}).await;
    let conv = h.conversation("c-events").await;
    let (_, mid) = h.joined(&conv, "bridge").await;
    let path = format!("/v1/conversations/{conv}/events");

    let big = json!({"type": "custom:wechat:message", "from": mid, "body": {"content": "x".repeat(4097)}});
    let (s, hd, b) = h.call("POST", &path, Some(big)).await;
    assert_problem(s, &hd, &b, StatusCode::BAD_REQUEST, "http:error:validation-fail");
    assert!(b["detail"].as_str().unwrap().contains("4096"), "{b}");

    // 4096 bytes exactly is allowed: {"content":"…"} has 14 bytes of framing.
    let max = json!({"type": "custom:wechat:message", "body": {"content": "x".repeat(4096 - 14)}});
    let (s, _, e) = h.call("POST", &path, Some(max)).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");

    for bad_type in ["custom:has space", "custom:", "custom:dots.not.allowed", &format!("custom:{}", "a".repeat(94))] {
        let (s, hd, b) = h.call("POST", &path, Some(json!({"type": bad_type, "body": {}}))).await;
        assert_problem(s, &hd, &b, StatusCode::BAD_REQUEST, "http:error:validation-fail");
        assert_eq!(b["invalid_parameters"][0]["name"], "type");
    }
    let (s, hd, b) = h.call("POST", &path, Some(json!({"type": "custom:x", "body": "text"}))).await;
    assert_problem(s, &hd, &b, StatusCode::BAD_REQUEST, "http:error:validation-fail");
    let (s, hd, b) = h.call("POST", &path, Some(json!({"type": "member:joined", "body": {}}))).await;
    assert_problem(s, &hd, &b, StatusCode::BAD_REQUEST, "conversation:error:invalid-event");
    let (s, hd, b) = h.call("POST", &path, Some(json!({"type": "custom:x", "from": "MEM-stranger", "body": {}}))).await;
    assert_problem(s, &hd, &b, StatusCode::BAD_REQUEST, "conversation:error:invalid-event");
    assert!(b["detail"].as_str().unwrap().contains("MEM-stranger"));

    let body = json!({"to": "gh_1", "from": "o1", "content": "你好", "direction": "inbound", "msgtype": "text"});
    let (s, _, e) = h.call("POST", &path, Some(json!({"type": "custom:wechat:message", "from": mid, "body": body}))).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    assert_eq!(e["id"], 3, "1 = member:joined, 2 = the 4096-byte event");
    assert!(e["id"].is_u64());
    assert_eq!(e["type"], "custom:wechat:message");
    assert_eq!(e["from"], mid);
    assert_eq!(e["body"], body);
    assert_eq!(e["_embedded"]["from_member"]["id"], mid);
    assert_eq!(e["_embedded"]["from_user"]["name"], "bridge");
    assert_eq!(e["_links"]["self"]["href"], format!("{}{path}/3", h.base));

    let (s, _, m) = h
        .call("POST", &path, Some(json!({"type": "message", "from": mid, "body": {"message_type": "text", "text": "hi"}})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    assert_eq!(m["id"], 4);
    let (s, hd, b) = h.call("POST", &path, Some(json!({"type": "message", "body": {"message_type": "image"}}))).await;
    assert_problem(s, &hd, &b, StatusCode::BAD_REQUEST, "http:error:validation-fail");

    // List: `_embedded` is an array; cursor pages; start_id filters.
    let (s, _, p1) = h.call("GET", &format!("{path}?page_size=3&order=asc"), None).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<u64> = p1["_embedded"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3]);
    let next = p1["_links"]["next"]["href"].as_str().unwrap().strip_prefix(&h.base).unwrap().to_owned();
    let (_, _, p2) = h.call("GET", &next, None).await;
    let ids: Vec<u64> = p2["_embedded"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [4]);
    assert!(p2["_links"].get("next").is_none());
    let (_, _, tail) = h.call("GET", &format!("{path}?start_id=3&order=desc"), None).await;
    let ids: Vec<u64> = tail["_embedded"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [4, 3]);
    let (s, _, one) = h.call("GET", &format!("{path}/3"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["body"], body);
    let (_, _, conv_now) = h.call("GET", &format!("/v1/conversations/{conv}"), None).await;
    assert_eq!(conv_now["sequence_number"], 4);
}

// ---- faults ----------------------------------------------------------------------------

#[tokio::test]
async fn fail_next_429_with_retry_after_then_success() {
    let h = Harness::start(|_| {}).await;
    h.sim.fail_next(2, 429, Some(1));
    for _ in 0..2 {
        let (s, hd, b) = h.call("POST", "/v1/users", Some(json!({"name": "u"}))).await;
        assert_problem(s, &hd, &b, StatusCode::TOO_MANY_REQUESTS, "http:error:too-many-request");
        assert_eq!(hd["retry-after"], "1");
        assert_eq!(b["title"], "Too Many Requests.");
        assert_eq!(b["type"], "https://developer.nexmo.com/api/conversation#http:error:too-many-request");
        assert_eq!(b["detail"], "You have exceeded your request limit. You can try again shortly.");
    }
    let (s, _, u) = h.call("POST", "/v1/users", Some(json!({"name": "u"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    assert_eq!(h.sim.users().len(), 1, "failed requests store nothing");

    h.sim.fail_next(1, 500, None);
    let (s, hd, b) = h.call("GET", "/v1/users", None).await;
    assert_problem(s, &hd, &b, StatusCode::INTERNAL_SERVER_ERROR, "http:error:db-unavailable");
    assert!(hd.get("retry-after").is_none());

    h.sim.set_down(true);
    let (s, hd, b) = h.call("GET", "/v1/users", None).await;
    assert_problem(s, &hd, &b, StatusCode::SERVICE_UNAVAILABLE, "http:error:service-not-available");
    h.sim.set_down(false);
    let (s, _, _) = h.call("GET", "/v1/users", None).await;
    assert_eq!(s, StatusCode::OK);

    h.sim.set_latency(Duration::from_millis(200));
    let t = std::time::Instant::now();
    let (s, _, _) = h.call("GET", "/v1/users", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(200));
    h.sim.set_latency(Duration::ZERO);
}

#[tokio::test]
async fn faults_and_state_over_http() {
    let h = Harness::start(|_| {}).await;
    let r = h
        .http
        .post(format!("{}/_sim/faults", h.base))
        .json(&json!({"fail_next": 1, "status": 503, "retry_after": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, hd, b) = h.call("GET", "/v1/conversations", None).await;
    assert_problem(s, &hd, &b, StatusCode::SERVICE_UNAVAILABLE, "http:error:service-not-available");
    assert_eq!(hd["retry-after"], "2");
    h.http.post(format!("{}/_sim/faults", h.base)).json(&json!({"down": true})).send().await.unwrap();
    let (s, _, _) = h.call("GET", "/v1/conversations", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    h.http.post(format!("{}/_sim/faults", h.base)).json(&json!({"down": false})).send().await.unwrap();

    let conv = h.conversation("c-state").await;
    let agent = h
        .http
        .post(format!("{}/_sim/agents", h.base))
        .json(&json!({"name": "agent1", "conversation_id": conv}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let r = h
        .http
        .post(format!("{}/_sim/conversations/{conv}/events", h.base))
        .json(&json!({"type": "custom:wechat:message", "from": agent["member_id"],
                      "body": {"to": "o1", "content": "hi", "direction": "outbound"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let state: Value = h.http.get(format!("{}/_sim/state", h.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["users"][0]["name"], "agent1");
    assert_eq!(state["conversations"][0]["id"], conv);
    assert_eq!(state["conversations"][0]["members"][0]["id"], agent["member_id"]);
    assert_eq!(state["conversations"][0]["events"].as_array().unwrap().len(), 2);
    assert_eq!(state["application"]["id"], APP_ID);
}

// ---- RTC webhook -----------------------------------------------------------------------

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(fail_first: usize) -> (Receiver, String) {
        let r = Receiver::default();
        r.fail_first.store(fail_first, Ordering::SeqCst);
        let app = axum::Router::new()
            .route(
                "/rtc",
                post(|State(r): State<Receiver>, headers: HeaderMap, body: Bytes| async move {
                    r.got.lock().unwrap().push((headers, body));
                    let fail = r.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                    if fail { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
                }),
            )
            .with_state(r.clone());
        let base = serve(app).await;
        (r, format!("{base}/rtc"))
    }

    async fn wait_for(&self, n: usize) -> Vec<(HeaderMap, Value, Bytes)> {
        for _ in 0..200 {
            if self.got.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let got = self.got.lock().unwrap().clone();
        assert!(got.len() >= n, "expected {n} webhook requests, got {}", got.len());
        got.into_iter().map(|(h, b)| (h, serde_json::from_slice(&b).unwrap(), b)).collect()
    }
}

#[tokio::test]
async fn rtc_events_arrive_in_order_and_signed() {
    let (rx, url) = Receiver::start(0).await;
    let h = Harness::start(|c| {
        c.rtc_event_url = Some(url);
        c.signature_secret = Some(SECRET.into());
    })
    .await;
    let conv = h.conversation("c-rtc").await;
    let (uid, mid) = h.joined(&conv, "bridge").await;
    for i in 0..5 {
        let (s, _, _) = h
            .call(
                "POST",
                &format!("/v1/conversations/{conv}/events"),
                Some(json!({"type": "custom:wechat:message", "from": mid,
                            "body": {"content": format!("m{i}"), "direction": "inbound"}})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let got = rx.wait_for(6).await;
    let ids: Vec<u64> = got.iter().map(|(_, v, _)| v["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    assert_eq!(got[0].1["type"], "member:joined");
    let (headers, ev, _) = &got[3];
    assert_eq!(ev["type"], "custom:wechat:message");
    assert_eq!(ev["application_id"], APP_ID);
    assert_eq!(ev["conversation_id"], conv);
    assert_eq!(ev["from"], mid);
    assert_eq!(ev["body"]["content"], "m2");
    assert_eq!(ev["_embedded"]["from_user"]["id"], uid);
    assert_eq!(ev["_embedded"]["from_member"]["id"], mid);
    assert!(humantime::parse_rfc3339(ev["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(headers["content-type"], "application/json");

    for (headers, _, raw_body) in &got {
        let token = headers["authorization"].to_str().unwrap().strip_prefix("Bearer ").unwrap();
        let mut v = Validation::new(Algorithm::HS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let claims = jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(SECRET.as_bytes()), &v).unwrap().claims;
        assert_eq!(claims["iss"], "Vonage");
        assert_eq!(claims["api_key"], "key123");
        assert_eq!(claims["application_id"], APP_ID);
        assert!(claims["iat"].is_u64() && claims["jti"].is_string());
        assert_eq!(claims["payload_hash"], hex::encode(Sha256::digest(raw_body)));
        // And a wrong secret does not verify.
        assert!(jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(b"wrong"), &v).is_err());
    }

    // The agent side: an event posted as a client SDK goes through the same path.
    let agent = h.sim.create_agent("agent1", &conv);
    let e = h
        .sim
        .post_event_as_client(
            &conv,
            json!({"type": "custom:wechat:message", "from": agent,
                   "body": {"to": "o1", "content": "hello", "direction": "outbound"}}),
        )
        .unwrap();
    assert_eq!(e["id"], 8, "7 = agent's member:joined");
    let got = rx.wait_for(8).await;
    assert_eq!(got[7].1["body"]["direction"], "outbound");
    assert_eq!(got[7].1["_embedded"]["from_user"]["name"], "agent1");
    let err = h.sim.post_event_as_client(&conv, json!({"type": "custom:bad type", "body": {}})).unwrap_err();
    assert!(err.contains("http:error:validation-fail"), "{err}");
    assert_eq!(h.sim.create_agent("agent1", &conv), agent, "create_agent is idempotent");
    assert_eq!(h.sim.all_events().len(), 8);
}

#[tokio::test]
async fn rtc_retries_after_500_and_keeps_order() {
    let (rx, url) = Receiver::start(2).await;
    let h = Harness::start(|c| c.rtc_event_url = Some(url)).await;
    let conv = h.conversation("c-retry").await;
    let agent = h.sim.create_agent("agent1", &conv); // event 1
    h.sim.post_event_as_client(&conv, json!({"type": "custom:wechat:message", "from": agent, "body": {"content": "x"}})).unwrap(); // event 2
    let got = rx.wait_for(4).await;
    let ids: Vec<u64> = got.iter().map(|(_, v, _)| v["id"].as_u64().unwrap()).collect();
    // Event 1 three times (500, 500, 200), then event 2: never overtaken.
    assert_eq!(ids, [1, 1, 1, 2]);
    assert!(got[0].0.get("authorization").is_none(), "unsigned without a secret");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.got.lock().unwrap().len(), 4, "no extra deliveries");
}

// ---- Application API -------------------------------------------------------------------

#[tokio::test]
async fn application_put_requires_basic_auth_and_sets_event_url() {
    let (rx, url) = Receiver::start(0).await;
    let h = Harness::start(|_| {}).await;
    let app_url = format!("{}/v2/applications/{APP_ID}", h.base);
    let body = json!({"name": "wechat-bridge",
                      "capabilities": {"rtc": {"webhooks": {"event_url": {"address": url, "http_method": "POST"}}}}});

    let r = h.http.put(&app_url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = h.http.put(&app_url).basic_auth("key123", Some("wrong")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = h.http.get(&app_url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(h.sim.rtc_event_url().is_none());

    let before: Value = h.http.get(&app_url).basic_auth("key123", Some("secret456")).send().await.unwrap().json().await.unwrap();
    assert!(before["capabilities"]["voice"].is_object());

    let r = h.http.put(&app_url).basic_auth("key123", Some("secret456")).json(&json!({"capabilities": {}})).send().await.unwrap();
    assert_eq!(r.status(), 400, "name is required");

    let r = h.http.put(&app_url).basic_auth("key123", Some("secret456")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let after: Value = r.json().await.unwrap();
    assert_eq!(after["capabilities"]["rtc"]["webhooks"]["event_url"]["address"], url);
    assert!(after["capabilities"].get("voice").is_none(), "PUT replaces capabilities (§3.1)");
    assert_eq!(h.sim.application()["capabilities"]["rtc"]["webhooks"]["event_url"]["address"], url);
    assert_eq!(h.sim.rtc_event_url().as_deref(), Some(url.as_str()));

    // From now on events go there.
    let conv = h.conversation("c-app").await;
    h.sim.create_agent("agent1", &conv);
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].1["type"], "member:joined");

    let r =
        h.http.get(format!("{}/v2/applications/other-app", h.base)).basic_auth("key123", Some("secret456")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn rtc_gives_up_after_eight_tries() {
    let (rx, url) = Receiver::start(usize::MAX).await;
    let h = Harness::start(|c| {
        c.rtc_event_url = Some(url);
        c.rtc_retry_base = Duration::from_millis(5);
    })
    .await;
    let conv = h.conversation("c-give-up").await;
    h.sim.create_agent("agent1", &conv);
    // 5 + 10 + … + 320 ms = 635 ms of backoff between the 8 tries.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = rx.wait_for(8).await;
    assert_eq!(got.len(), 8, "8 tries, then dropped");
    let state: Value = h.http.get(format!("{}/_sim/state", h.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["rtc"]["dropped"], 1);
    assert_eq!(state["rtc"]["delivered"], 0);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_problems() {
    let h = Harness::start(|_| {}).await;
    let (s, hd, b) = h.call("DELETE", "/v1/users", None).await;
    assert_problem(s, &hd, &b, StatusCode::METHOD_NOT_ALLOWED, "http:error:method-not-allowed");
    let (s, hd, b) = h.call("GET", "/v1/nothing-here", None).await;
    assert_problem(s, &hd, &b, StatusCode::NOT_FOUND, "http:error:not-found");
    let (s, hd, b) = h.call_with_token("POST", "/v1/users", None, &jwt()).await;
    assert_eq!(s, StatusCode::CREATED, "an empty body creates an unnamed user: {b} {hd:?}");
    assert!(b["name"].as_str().unwrap().starts_with("NAM-"));
    let r = h
        .http
        .post(format!("{}/v1/conversations", h.base))
        .bearer_auth(jwt())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}
