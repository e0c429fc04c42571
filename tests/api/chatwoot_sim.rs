//! Black-box tests of the Chatwoot simulator over real HTTP: the router served on 127.0.0.1:0,
//! called with reqwest as a bridge would, webhooks caught by a local axum receiver.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use wechat_bridge::chatwoot::sim::{AgentReply, ChatwootSim, ChatwootSimConfig, SimFile};

use crate::helpers::serve;

const ADMIN: &str = "sim-admin-token";
const AGENT: &str = "sim-agent-token";
const BOT: &str = "sim-bot-token";
const SECRET: &str = "sim-inbox-secret";

struct Harness {
    sim: ChatwootSim,
    base: String,
    http: reqwest::Client,
}

impl Harness {
    async fn start(tweak: impl FnOnce(&mut ChatwootSimConfig)) -> Harness {
        let mut config = ChatwootSimConfig::new();
        tweak(&mut config);
        let sim = ChatwootSim::new(config);
        let base = serve(sim.router()).await;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Harness { sim, base, http }
    }

    /// Calls `path` (under `/api/v1/accounts/1` unless it starts with `/api` or `/_sim`).
    async fn raw(&self, token: Option<&str>, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let url = if path.starts_with("/api") || path.starts_with("/_sim") {
            format!("{}{path}", self.base)
        } else {
            format!("{}/api/v1/accounts/1{path}", self.base)
        };
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.header("api_access_token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    async fn call(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let resp = self.raw(Some(token), method, path, body).await;
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(ADMIN, method, path, body).await
    }

    /// A contact with a session in the API inbox and an open conversation: (contact id, display id).
    async fn customer(&self, openid: &str) -> (u64, u64) {
        let (s, created) = self
            .admin(
                Method::POST,
                "/contacts",
                Some(json!({"inbox_id": 3, "name": format!("User {openid}"), "identifier": format!("wechat:wx1:{openid}"),
                            "source_id": format!("wx-{openid}")})),
            )
            .await;
        assert_eq!(s, 200, "{created}");
        let contact = created["payload"]["contact"]["id"].as_u64().unwrap();
        let (s, conv) = self
            .admin(
                Method::POST,
                "/conversations",
                Some(json!({"source_id": format!("wx-{openid}"), "inbox_id": 3, "contact_id": contact, "status": "open"})),
            )
            .await;
        assert_eq!(s, 200, "{conv}");
        (contact, conv["id"].as_u64().unwrap())
    }

    async fn incoming(&self, conv: u64, content: &str) -> Value {
        let (s, m) = self
            .admin(
                Method::POST,
                &format!("/conversations/{conv}/messages"),
                Some(json!({"content": content, "message_type": "incoming"})),
            )
            .await;
        assert_eq!(s, 200, "{m}");
        m
    }

    async fn messages(&self, conv: u64, query: &str) -> Vec<u64> {
        let (s, v) = self.admin(Method::GET, &format!("/conversations/{conv}/messages{query}"), None).await;
        assert_eq!(s, 200, "{v}");
        v["payload"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect()
    }
}

/// Catches webhooks; answers `status` after `delay_ms`.
#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
}

impl Receiver {
    async fn start(status: u16) -> (Receiver, String) {
        let r = Receiver { got: Arc::default(), status: Arc::new(AtomicU16::new(status)), delay_ms: Arc::new(AtomicU64::new(0)) };
        let app = axum::Router::new()
            .route(
                "/hook",
                post(|State(r): State<Receiver>, headers: HeaderMap, body: Bytes| async move {
                    r.got.lock().unwrap().push((headers, body));
                    let delay = r.delay_ms.load(Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    StatusCode::from_u16(r.status.load(Ordering::SeqCst)).unwrap()
                }),
            )
            .with_state(r.clone());
        let base = serve(app).await;
        (r, format!("{base}/hook"))
    }

    fn bodies(&self) -> Vec<Value> {
        self.got.lock().unwrap().iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect()
    }
}

fn events(sim: &ChatwootSim) -> Vec<String> {
    sim.webhooks().iter().map(|w| w.event.clone()).collect()
}

// ---- auth ----------------------------------------------------------------------------------

#[tokio::test]
async fn auth_errors_have_chatwoots_shapes() {
    let h = Harness::start(|_| {}).await;
    let invalid = json!({"error": "Invalid Access Token"});
    assert_eq!(h.call("nope", Method::GET, "/inboxes/3", None).await, (StatusCode::UNAUTHORIZED, invalid.clone()));
    let resp = h.raw(None, Method::GET, "/inboxes/3", None).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap(), invalid);
    assert_eq!(
        h.admin(Method::GET, "/api/v1/accounts/2/inboxes/3", None).await,
        (StatusCode::UNAUTHORIZED, json!({"error": "You are not authorized to access this account"}))
    );

    let bots = (StatusCode::UNAUTHORIZED, json!({"error": "Access to this endpoint is not authorized for bots"}));
    assert_eq!(h.call(BOT, Method::POST, "/contacts", Some(json!({"name": "x"}))).await, bots);
    assert_eq!(h.call(BOT, Method::POST, "/contacts/filter", Some(json!({"payload": []}))).await, bots);
    assert_eq!(h.call(BOT, Method::GET, "/contacts/search?q=x", None).await, bots);
    assert_eq!(h.call(BOT, Method::GET, "/api/v1/profile", None).await, bots);
    let (_, conv) = h.customer("oAuth").await;
    assert_eq!(
        h.call(BOT, Method::PATCH, &format!("/conversations/{conv}/messages/1"), Some(json!({"status": "read"}))).await,
        bots
    );
    assert_eq!(h.call(BOT, Method::GET, &format!("/conversations/{conv}/messages"), None).await, bots);
    // The whitelist: a bot may read the conversation and post to it, as itself.
    assert_eq!(h.call(BOT, Method::GET, &format!("/conversations/{conv}"), None).await.0, 200);
    let (s, m) = h.call(BOT, Method::POST, &format!("/conversations/{conv}/messages"), Some(json!({"content": "bot"}))).await;
    assert_eq!((s, m["sender"]["type"].clone(), m["message_type"].clone()), (StatusCode::OK, json!("agent_bot"), json!(1)));

    // Pundit denials are 401 (§4.2): the agent may read its inbox, not change it.
    let (s, inbox) = h.call(AGENT, Method::GET, "/inboxes/3", None).await;
    assert_eq!(s, 200);
    assert!(inbox.get("secret").is_none() && inbox.get("hmac_token").is_none(), "secrets are for administrators: {inbox}");
    assert_eq!(
        h.call(AGENT, Method::PATCH, "/inboxes/3", Some(json!({"channel": {"webhook_url": "http://x"}}))).await,
        (StatusCode::UNAUTHORIZED, json!({"error": "You are not authorized to do this action"}))
    );
    assert_eq!(h.call(AGENT, Method::GET, "/inboxes/4", None).await.0, 401, "not a member of the web widget");
    assert_eq!(
        h.admin(Method::GET, "/inboxes/99", None).await,
        (StatusCode::NOT_FOUND, json!({"error": "Resource could not be found"}))
    );
    let (s, inbox) = h.admin(Method::GET, "/inboxes/3", None).await;
    assert_eq!(
        (s, inbox["channel_type"].clone(), inbox["secret"].clone()),
        (StatusCode::OK, json!("Channel::Api"), json!(SECRET))
    );
    assert_eq!(inbox, h.sim.inbox());

    let (s, profile) = h.admin(Method::GET, "/api/v1/profile", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        (profile["name"].clone(), profile["accounts"][0]["role"].clone()),
        (json!("WeChat Bridge"), json!("administrator"))
    );
    assert_eq!(h.call(AGENT, Method::GET, "/api/v1/profile", None).await.1["accounts"][0]["role"], "agent");
    assert!(h.sim.api_requests().iter().all(|(_, p)| p.starts_with("/api/")));
}

// ---- contacts ------------------------------------------------------------------------------

#[tokio::test]
async fn contacts_are_unique_by_identifier_and_found_by_filter_and_search() {
    let h = Harness::start(|_| {}).await;
    let body = json!({"inbox_id": 3, "name": "微信用户", "identifier": "wechat:wx1:oABC_xyz", "source_id": "wx-oABC"});
    let (s, created) = h.admin(Method::POST, "/contacts", Some(body.clone())).await;
    assert_eq!(s, 200, "{created}");
    let contact = &created["payload"]["contact"];
    assert_eq!(contact["identifier"], "wechat:wx1:oABC_xyz");
    assert_eq!(contact["contact_inboxes"][0]["source_id"], "wx-oABC");
    assert_eq!(contact["contact_inboxes"][0]["inbox"]["id"], 3);
    assert_eq!(created["payload"]["contact_inbox"]["source_id"], "wx-oABC");
    let id = contact["id"].as_u64().unwrap();

    assert_eq!(
        h.admin(Method::POST, "/contacts", Some(body)).await,
        (StatusCode::UNPROCESSABLE_ENTITY, json!({"message": "Identifier has already been taken", "attributes": ["identifier"]}))
    );
    let (s, long) = h.admin(Method::POST, "/contacts", Some(json!({"identifier": "x".repeat(256)}))).await;
    assert_eq!((s, long["attributes"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(["identifier"])));
    // A source_id another contact holds in the inbox: RecordNotUnique, a 500, nothing created.
    let (s, _) =
        h.admin(Method::POST, "/contacts", Some(json!({"identifier": "other", "inbox_id": 3, "source_id": "wx-oABC"}))).await;
    assert_eq!(s, 500);
    assert_eq!(h.admin(Method::POST, "/contacts", Some(json!({"identifier": "o2", "inbox_id": 77}))).await.0, 404);
    assert_eq!(h.sim.contacts().len(), 1);

    // Filter: identifier equal_to, case-insensitive.
    let filter = |v: &str| json!({"payload": [{"attribute_key": "identifier", "filter_operator": "equal_to", "values": [v], "query_operator": null}]});
    let (s, found) = h.admin(Method::POST, "/contacts/filter", Some(filter("WECHAT:WX1:oabc_XYZ"))).await;
    assert_eq!(s, 200, "{found}");
    assert_eq!((found["meta"]["count"].clone(), found["payload"][0]["id"].clone()), (json!(1), json!(id)));
    assert!(found["payload"][0]["contact_inboxes"].is_array());
    assert_eq!(h.admin(Method::POST, "/contacts/filter", Some(filter("nobody"))).await.1["payload"], json!([]));

    // Search: identifier LIKE '%q%' (case-sensitive, `_` a wildcard), name ILIKE.
    let search = async |q: &str| h.admin(Method::GET, &format!("/contacts/search?q={}", encode(q)), None).await;
    assert_eq!(search("oABC").await.1["payload"][0]["id"], id);
    assert_eq!(search("oabc").await.1["payload"], json!([]), "LIKE on the identifier is case-sensitive");
    assert_eq!(search("C_x").await.1["payload"][0]["id"], id);
    assert_eq!(search("o_BC").await.1["payload"][0]["id"], id, "_ in q matches any character");
    assert_eq!(search("微信").await.1["meta"]["has_more"], false);
    assert_eq!(search("").await, (StatusCode::UNPROCESSABLE_ENTITY, json!({"error": "Specify search string with parameter q"})));

    // The contact's inbox sessions and conversations.
    let (s, ci) = h.admin(Method::POST, &format!("/contacts/{id}/contact_inboxes"), Some(json!({"inbox_id": 4}))).await;
    assert_eq!((s, ci["inbox"]["channel_type"].clone()), (StatusCode::OK, json!("Channel::WebWidget")));
    assert_eq!(h.admin(Method::GET, &format!("/contacts/{id}/conversations"), None).await.1, json!({"payload": []}));
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn contact_search_is_throttled_at_100_a_minute() {
    let h = Harness::start(|_| {}).await;
    for i in 0..100 {
        assert_eq!(h.admin(Method::GET, "/contacts/search?q=x", None).await.0, 200, "search {i}");
    }
    let resp = h.raw(Some(ADMIN), Method::GET, "/contacts/search?q=x", None).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_none());
    assert_eq!(resp.text().await.unwrap(), "Retry later\n");
}

// ---- conversations -------------------------------------------------------------------------

#[tokio::test]
async fn conversations_use_per_account_display_ids() {
    let h = Harness::start(|_| {}).await;
    let (contact, first) = h.customer("oOne").await;
    let (_, second) = h.customer("oTwo").await;
    assert_eq!((first, second), (1, 2));
    let (s, conv) = h.admin(Method::GET, "/conversations/1", None).await;
    assert_eq!(s, 200);
    assert_eq!(conv["id"], 1);
    assert_eq!(conv["status"], "open");
    assert_eq!(conv["inbox_id"], 3);
    assert_eq!(conv["can_reply"], true);
    assert_eq!(conv["meta"]["sender"]["identifier"], "wechat:wx1:oOne");
    assert_eq!(conv["uuid"].as_str().unwrap().len(), 36);
    assert_eq!(h.admin(Method::GET, "/conversations/99", None).await.0, 404);
    assert_eq!(h.admin(Method::GET, &format!("/contacts/{contact}/conversations"), None).await.1["payload"][0]["id"], 1);
    assert_eq!(h.sim.conversations().iter().map(|c| c["id"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2]);

    let (s, toggled) = h.admin(Method::POST, "/conversations/2/toggle_status", Some(json!({"status": "resolved"}))).await;
    assert_eq!((s, toggled["payload"]["current_status"].clone()), (StatusCode::OK, json!("resolved")));
    let (_, toggled) = h.admin(Method::POST, "/conversations/2/toggle_status", None).await;
    assert_eq!(toggled["payload"]["current_status"], "open", "no status toggles resolved back to open");
}

#[tokio::test]
async fn incoming_message_reopens_a_resolved_conversation() {
    let (rx, url) = Receiver::start(200).await;
    let h = Harness::start(|c| c.webhook_url = Some(url)).await;
    let (_, conv) = h.customer("oReopen").await;
    h.sim.resolve(conv).await;
    assert_eq!(h.admin(Method::GET, &format!("/conversations/{conv}"), None).await.1["status"], "resolved");
    let resolved = h.sim.webhooks().into_iter().find(|w| w.event == "conversation_status_changed").unwrap();
    assert_eq!(resolved.body["changed_attributes"][0]["status"], json!({"previous_value": "open", "current_value": "resolved"}));

    let m = h.incoming(conv, "one more question").await;
    assert_eq!(h.admin(Method::GET, &format!("/conversations/{conv}"), None).await.1["status"], "open");
    h.sim.settle().await;
    let evs = events(&h.sim);
    let tail: Vec<&str> = evs.iter().rev().take(3).rev().map(String::as_str).collect();
    assert_eq!(tail, ["conversation_status_changed", "conversation_updated", "message_created"]);
    assert_eq!(rx.bodies().last().unwrap()["id"], m["id"]);
    let contents: Vec<Value> = h.sim.messages(conv).iter().map(|m| m["content"].clone()).collect();
    assert!(contents.contains(&json!("Conversation was marked resolved by Agent Li")), "{contents:?}");
    assert!(contents.contains(&json!("Conversation was reopened by User oReopen")), "{contents:?}");
}

// ---- messages ------------------------------------------------------------------------------

#[tokio::test]
async fn incoming_messages_as_json_and_multipart_with_downloadable_attachments() {
    let h = Harness::start(|_| {}).await;
    let (contact, conv) = h.customer("oMedia").await;
    let body = json!({"content": "你好", "message_type": "incoming", "source_id": "wxmsg:1",
                      "content_attributes": {"wechat_msgtype": "text"}, "echo_id": "e-1"});
    let (s, m) = h.admin(Method::POST, &format!("/conversations/{conv}/messages"), Some(body)).await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["message_type"], 0);
    assert_eq!(m["status"], "sent");
    assert_eq!(m["conversation_id"], conv);
    assert_eq!(m["source_id"], "wxmsg:1");
    assert_eq!(m["echo_id"], "e-1");
    assert_eq!(m["content_attributes"], json!({"wechat_msgtype": "text"}));
    assert_eq!((m["sender"]["id"].clone(), m["sender"]["type"].clone()), (json!(contact), json!("contact")));
    assert!(m.get("attachments").is_none());

    let png = vec![0x89, b'P', b'N', b'G', 1, 2, 3];
    let amr = b"#!AMR\n\x00\x01".to_vec();
    let form = reqwest::multipart::Form::new()
        .text("content", "two files")
        .text("message_type", "incoming")
        .text("private", "false")
        .text("source_id", "wxmsg:2")
        .part("attachments[]", reqwest::multipart::Part::bytes(png.clone()).file_name("photo.png").mime_str("image/png").unwrap())
        .part(
            "attachments[]",
            reqwest::multipart::Part::bytes(amr.clone()).file_name("voice.amr").mime_str("audio/amr").unwrap(),
        );
    let resp = h
        .http
        .post(format!("{}/api/v1/accounts/1/conversations/{conv}/messages", h.base))
        .header("api_access_token", ADMIN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let m: Value = resp.json().await.unwrap();
    assert_eq!(
        (m["content"].clone(), m["private"].clone(), m["message_type"].clone()),
        (json!("two files"), json!(false), json!(0))
    );
    let atts = m["attachments"].as_array().unwrap();
    assert_eq!(atts.len(), 2);
    assert_eq!((atts[0]["file_type"].clone(), atts[0]["extension"].clone()), (json!("image"), json!("png")));
    assert_eq!((atts[1]["file_type"].clone(), atts[1]["file_size"].clone()), (json!("audio"), json!(amr.len())));
    assert_eq!(atts[0]["message_id"], m["id"]);

    // data_url redirects to the stored file, which comes back with its type.
    let data_url = atts[0]["data_url"].as_str().unwrap();
    assert!(data_url.starts_with(&format!("{}/rails/active_storage/blobs/redirect/", h.base)), "{data_url}");
    let redirect = h.http.get(data_url).send().await.unwrap();
    assert_eq!(redirect.status(), 302);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("/rails/active_storage/disk/"), "{location}");
    let file = h.http.get(&location).send().await.unwrap();
    assert_eq!(file.headers()["content-type"], "image/png");
    assert_eq!(file.bytes().await.unwrap().to_vec(), png);
    let stored = h.sim.attachment(atts[1]["id"].as_u64().unwrap()).unwrap();
    assert_eq!(stored, SimFile { filename: "voice.amr".into(), content_type: "audio/amr".into(), bytes: amr });

    // At most 15 attachments.
    let mut form = reqwest::multipart::Form::new().text("message_type", "incoming");
    for i in 0..16 {
        form = form.part("attachments[]", reqwest::multipart::Part::bytes(vec![1]).file_name(format!("f{i}.bin")));
    }
    let resp = h
        .http
        .post(format!("{}/api/v1/accounts/1/conversations/{conv}/messages", h.base))
        .header("api_access_token", ADMIN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);

    // Incoming messages only in API inboxes.
    let (s, _) = h
        .admin(Method::POST, &format!("/contacts/{contact}/contact_inboxes"), Some(json!({"inbox_id": 4, "source_id": "w-1"})))
        .await;
    assert_eq!(s, 200);
    let (s, web) =
        h.admin(Method::POST, "/conversations", Some(json!({"inbox_id": 4, "contact_id": contact, "source_id": "w-1"}))).await;
    assert_eq!(s, 200, "{web}");
    let web = web["id"].as_u64().unwrap();
    assert_eq!(
        h.admin(
            Method::POST,
            &format!("/conversations/{web}/messages"),
            Some(json!({"content": "x", "message_type": "incoming"}))
        )
        .await,
        (StatusCode::UNPROCESSABLE_ENTITY, json!({"error": "Incoming messages are only allowed in Api inboxes"}))
    );
}

#[tokio::test]
async fn two_hundred_messages_a_minute_per_conversation() {
    let h = Harness::start(|_| {}).await;
    let (_, conv) = h.customer("oFlood").await;
    let (_, other) = h.customer("oCalm").await;
    for i in 0..200 {
        let (s, m) = h
            .admin(
                Method::POST,
                &format!("/conversations/{conv}/messages"),
                Some(json!({"content": i.to_string(), "message_type": "incoming"})),
            )
            .await;
        assert_eq!(s, 200, "message {i}: {m}");
    }
    assert_eq!(
        h.admin(
            Method::POST,
            &format!("/conversations/{conv}/messages"),
            Some(json!({"content": "201", "message_type": "incoming"}))
        )
        .await,
        (StatusCode::UNPROCESSABLE_ENTITY, json!({"error": "Validation failed: Too many messages"}))
    );
    assert_eq!(h.incoming(other, "another conversation is fine").await["status"], "sent");
}

#[tokio::test]
async fn messages_page_with_after_and_before() {
    let h = Harness::start(|_| {}).await;
    let (_, conv) = h.customer("oPages").await;
    let mut ids = Vec::new();
    for i in 0..110 {
        ids.push(h.incoming(conv, &format!("m{i}")).await["id"].as_u64().unwrap());
    }
    assert_eq!(h.messages(conv, "").await, ids[90..].to_vec(), "no parameter: the latest 20, oldest first");
    assert_eq!(h.messages(conv, &format!("?after={}", ids[4])).await, ids[5..105].to_vec(), "after: up to 100");
    assert_eq!(h.messages(conv, &format!("?after={}", ids[104])).await, ids[105..].to_vec());
    assert_eq!(h.messages(conv, &format!("?before={}", ids[50])).await, ids[30..50].to_vec(), "before: the 20 before");
    assert_eq!(h.messages(conv, &format!("?after={}&before={}", ids[10], ids[13])).await, ids[10..13].to_vec());

    let (_, page) = h.admin(Method::GET, &format!("/conversations/{conv}/messages?after={}", ids[108]), None).await;
    assert_eq!(page["meta"]["contact_id"], h.sim.contacts()[0]["id"]);
    assert_eq!(page["payload"][0]["message_type"], 0);
    assert_eq!(page["payload"][0]["content"], "m109");

    // Private notes and activity messages are internal.
    let note = h.sim.agent_reply(conv, AgentReply::private_note("internal")).await;
    h.sim.resolve(conv).await;
    let all = h.messages(conv, &format!("?after={}", ids[109])).await;
    assert_eq!(all.len(), 2, "the note and the activity message");
    assert_eq!(all[0], note);
    assert!(h.messages(conv, &format!("?after={}&filter_internal_messages=1", ids[109])).await.is_empty());
}

#[tokio::test]
async fn status_patch_follows_the_status_service() {
    let (rx, url) = Receiver::start(200).await;
    let h = Harness::start(|c| c.webhook_url = Some(url)).await;
    let (contact, conv) = h.customer("oStatus").await;
    let id = h.sim.agent_reply(conv, AgentReply::text("hello")).await;
    let patch = async |body: Value| h.admin(Method::PATCH, &format!("/conversations/{conv}/messages/{id}"), Some(body)).await;
    let before = h.sim.webhooks().len();

    let (s, m) = patch(json!({"status": "failed", "external_error": "errcode 45015"})).await;
    assert_eq!(
        (s, m["status"].clone(), m["content_attributes"]["external_error"].clone()),
        (StatusCode::OK, json!("failed"), json!("errcode 45015"))
    );
    let (_, m) = patch(json!({"status": "delivered", "external_error": "ignored"})).await;
    assert_eq!(m["status"], "delivered");
    assert_eq!(m["content_attributes"]["external_error"], Value::Null, "kept only for failed");
    let (_, m) = patch(json!({"status": "read"})).await;
    assert_eq!(m["status"], "read");
    let (s, m) = patch(json!({"status": "delivered"})).await;
    assert_eq!((s, m["status"].clone()), (StatusCode::OK, json!("read")), "read → delivered is ignored");
    let (s, m) = patch(json!({"status": "bogus"})).await;
    assert_eq!((s, m["status"].clone()), (StatusCode::OK, json!("read")), "an unknown status is ignored with 200");
    h.sim.settle().await;
    assert_eq!(h.sim.webhooks().len() - before, 3, "message_updated for each change only: {:?}", events(&h.sim));
    assert!(rx.bodies().iter().rev().take(3).all(|b| b["event"] == "message_updated" && b["id"] == id));

    assert_eq!(
        h.admin(Method::PATCH, &format!("/conversations/{conv}/messages/424242"), Some(json!({"status": "read"}))).await.0,
        404
    );
    h.admin(Method::POST, &format!("/contacts/{contact}/contact_inboxes"), Some(json!({"inbox_id": 4, "source_id": "w-2"})))
        .await;
    let (_, web) =
        h.admin(Method::POST, "/conversations", Some(json!({"inbox_id": 4, "contact_id": contact, "source_id": "w-2"}))).await;
    let web = web["id"].as_u64().unwrap();
    let web_msg = h.sim.agent_reply(web, AgentReply::text("on the website")).await;
    assert_eq!(
        h.admin(Method::PATCH, &format!("/conversations/{web}/messages/{web_msg}"), Some(json!({"status": "read"}))).await,
        (StatusCode::FORBIDDEN, json!({"error": "Message status update is only allowed for API inboxes"}))
    );
    h.sim.settle().await;
    assert!(
        h.sim.webhooks().iter().all(|w| w.body["inbox"]["id"] != 4 && w.body["inbox_id"] != 4),
        "other inboxes send nothing here"
    );
}

// ---- webhooks ------------------------------------------------------------------------------

#[tokio::test]
async fn webhooks_are_signed_with_the_inbox_secret() {
    let (rx, url) = Receiver::start(200).await;
    let h = Harness::start(|c| c.webhook_url = Some(url)).await;
    let (_, conv) = h.customer("oSigned").await;
    let m = h.incoming(conv, "hi\\\nthere\n").await;
    h.sim.settle().await;

    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "conversation_created, message_created");
    let (headers, raw) = got.last().unwrap().clone();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["accept"], "application/json");
    assert!(uuid::Uuid::parse_str(headers["x-chatwoot-delivery"].to_str().unwrap()).is_ok());
    let ts = headers["x-chatwoot-timestamp"].to_str().unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&raw);
    assert_eq!(headers["x-chatwoot-signature"].to_str().unwrap(), format!("sha256={}", hex::encode(mac.finalize().into_bytes())));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(now.abs_diff(ts.parse().unwrap()) < 5);

    let body: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(body["event"], "message_created");
    assert_eq!(body["id"], m["id"]);
    assert_eq!(body["message_type"], "incoming", "a string at the top level");
    assert_eq!(body["content"], "hi\nthere", "Markdown hard breaks and trailing newlines removed");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'), "ISO time at the top level");
    assert_eq!(body["conversation"]["id"], conv);
    assert_eq!(body["conversation"]["contact_inbox"]["source_id"], "wx-oSigned");
    assert_eq!(body["conversation"]["meta"]["sender"]["identifier"], "wechat:wx1:oSigned");
    assert_eq!(body["conversation"]["messages"][0]["message_type"], 0, "an integer inside the conversation");
    assert_eq!(body["inbox"], json!({"id": 3, "name": "WeChat"}));
    assert_eq!(body["account"], json!({"id": 1, "name": "Acme"}));
    assert_eq!(body["sender"]["identifier"], "wechat:wx1:oSigned");
    assert!(body["sender"].get("type").is_none(), "contact senders have no type");
    assert!(body.get("status").is_none() && body.get("attachments").is_none());
    assert!(h.sim.webhooks().iter().all(|w| w.signed && w.status == Some(200)));
}

#[tokio::test]
async fn legacy_chatwoot_sends_unsigned_webhooks() {
    let (rx, url) = Receiver::start(200).await;
    let h = Harness::start(|c| {
        c.webhook_url = Some(url);
        c.inbox_secret = None;
    })
    .await;
    let (_, conv) = h.customer("oLegacy").await;
    h.sim.agent_reply(conv, AgentReply::text("hi")).await;
    let got = rx.got.lock().unwrap().clone();
    assert!(got.iter().all(|(hd, _)| hd.get("x-chatwoot-signature").is_none() && hd.get("x-chatwoot-timestamp").is_none()));
    assert!(got.iter().all(|(hd, _)| hd.get("x-chatwoot-delivery").is_some()));
    assert!(h.sim.webhooks().iter().all(|w| !w.signed));
    assert!(h.sim.inbox().get("secret").is_none());
}

#[tokio::test]
async fn a_failed_webhook_is_not_retried_and_marks_the_message_failed() {
    let (rx, url) = Receiver::start(500).await;
    let h = Harness::start(|c| c.webhook_url = Some(url)).await;
    let (_, conv) = h.customer("oFail").await;
    let id = h.sim.agent_reply(conv, AgentReply::text("lost reply")).await;

    // Failed already when agent_reply returns; the failure is itself a message_updated.
    let message = h.sim.messages(conv).into_iter().find(|m| m["id"] == id).unwrap();
    assert_eq!(message["status"], "failed");
    assert_eq!(message["content_attributes"]["external_error"], "500 Internal Server Error");
    let hooks: Vec<_> = h.sim.webhooks().into_iter().filter(|w| w.message_id == Some(id)).collect();
    assert_eq!(hooks.len(), 2, "once each, no retry: {hooks:?}");
    assert_eq!(
        (hooks[0].event.as_str(), hooks[0].status, hooks[0].error.as_deref()),
        ("message_created", Some(500), Some("500 Internal Server Error"))
    );
    assert_eq!(hooks[1].event, "message_updated");
    assert_eq!(hooks[1].body["content_attributes"]["external_error"], "500 Internal Server Error");
    h.sim.settle().await;
    assert_eq!(rx.got.lock().unwrap().len(), 3, "conversation_created plus those two");

    // The bridge's own incoming message is marked failed too (§0.2).
    let m = h.incoming(conv, "mine").await;
    h.sim.settle().await;
    let mine = h.sim.messages(conv).into_iter().find(|x| x["id"] == m["id"]).unwrap();
    assert_eq!(mine["status"], "failed");

    // A refused connection, and a receiver slower than WEBHOOK_TIMEOUT.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    h.sim.set_webhook_url(Some(closed));
    let id = h.sim.agent_reply(conv, AgentReply::text("nobody home")).await;
    let error = h.sim.webhooks().into_iter().find(|w| w.message_id == Some(id)).unwrap().error.unwrap();
    assert!(error.starts_with("Failed to open TCP connection to 127.0.0.1:"), "{error}");
}

#[tokio::test]
async fn a_slow_receiver_times_out() {
    let (rx, url) = Receiver::start(200).await;
    rx.delay_ms.store(1_000, Ordering::SeqCst);
    let h = Harness::start(|c| {
        c.webhook_url = Some(url);
        c.webhook_timeout = Duration::from_millis(150);
    })
    .await;
    let (_, conv) = h.customer("oSlow").await;
    let id = h.sim.agent_reply(conv, AgentReply::text("too slow")).await;
    let message = h.sim.messages(conv).into_iter().find(|m| m["id"] == id).unwrap();
    assert_eq!(
        (message["status"].clone(), message["content_attributes"]["external_error"].clone()),
        (json!("failed"), json!("Timed out reading data from server"))
    );
}

#[tokio::test]
async fn dashboard_actions_fire_their_webhooks() {
    let (rx, url) = Receiver::start(200).await;
    let h = Harness::start(|c| c.webhook_url = Some(url)).await;
    let (_, conv) = h.customer("oAgent").await;

    let photo = SimFile { filename: "box.png".into(), content_type: "image/png".into(), bytes: vec![1, 2, 3] };
    let reply = h.sim.agent_reply(conv, AgentReply::text("here it is").with_attachment(photo)).await;
    let hook = h.sim.webhooks().into_iter().find(|w| w.message_id == Some(reply)).unwrap().body;
    assert_eq!((hook["message_type"].clone(), hook["private"].clone()), (json!("outgoing"), json!(false)));
    assert_eq!(hook["sender"], json!({"id": 2, "name": "Agent Li", "email": "li@example.com", "type": "user"}));
    let attachment = hook["attachments"][0].clone();
    assert_eq!(attachment["file_type"], "image");
    assert_eq!(h.http.get(attachment["data_url"].as_str().unwrap()).send().await.unwrap().status(), 302);

    let note = h.sim.agent_reply(conv, AgentReply::private_note("VIP")).await;
    let template = h.sim.agent_reply(conv, AgentReply { template: true, ..AgentReply::text("How did we do?") }).await;
    let bot = h.sim.agent_reply(conv, AgentReply { by_bot: true, ..AgentReply::text("beep") }).await;
    let by_id = |id: u64| h.sim.webhooks().into_iter().find(|w| w.message_id == Some(id)).unwrap().body;
    assert_eq!(by_id(note)["private"], true);
    assert_eq!((by_id(template)["message_type"].clone(), by_id(template)["sender"].clone()), (json!("template"), Value::Null));
    assert_eq!(by_id(bot)["sender"]["type"], "agent_bot");

    // Delete: one message_updated, text replaced, attachments gone.
    h.sim.delete_message(reply).await;
    let deleted = h.sim.webhooks().last().unwrap().clone();
    assert_eq!((deleted.event.as_str(), deleted.message_id), ("message_updated", Some(reply)));
    assert_eq!(deleted.body["content"], "This message was deleted");
    assert_eq!(deleted.body["content_attributes"], json!({"deleted": true}));
    assert!(deleted.body.get("attachments").is_none());
    assert!(h.sim.attachment(attachment["id"].as_u64().unwrap()).is_none());

    // Retry on a failed message: sent, external_error gone, nothing re-sent (two updates).
    h.admin(
        Method::PATCH,
        &format!("/conversations/{conv}/messages/{note}"),
        Some(json!({"status": "failed", "external_error": "x"})),
    )
    .await;
    h.sim.settle().await;
    let before = h.sim.webhooks().len();
    h.sim.retry(note).await;
    let retried: Vec<_> = h.sim.webhooks()[before..].to_vec();
    assert_eq!(retried.len(), 2, "{retried:?}");
    assert!(retried.iter().all(|w| w.event == "message_updated" && w.message_id == Some(note)));
    assert_eq!(retried[0].body["content_attributes"], json!({"external_error": null}));
    assert_eq!(retried[1].body["content_attributes"], json!({}));
    let m = h.sim.messages(conv).into_iter().find(|m| m["id"] == note).unwrap();
    assert_eq!((m["status"].clone(), m["content_attributes"].clone()), (json!("sent"), json!({})));

    h.sim.resolve(conv).await;
    let last: Vec<String> = events(&h.sim).into_iter().rev().take(2).collect();
    assert_eq!(last, ["conversation_updated", "conversation_status_changed"]);
    assert_eq!(rx.got.lock().unwrap().len(), h.sim.webhooks().len());
}

// ---- inbox ---------------------------------------------------------------------------------

#[tokio::test]
async fn inbox_patch_sets_the_webhook_and_the_reply_window() {
    let (rx, url) = Receiver::start(200).await;
    let h = Harness::start(|_| {}).await;
    let (_, conv) = h.customer("oWindow").await;
    assert!(h.sim.webhooks().is_empty(), "no webhook_url, nothing sent");
    let update = json!({"channel": {"webhook_url": url, "additional_attributes": {"agent_reply_time_window": 48}}});
    let (s, inbox) = h.admin(Method::PATCH, "/inboxes/3", Some(update)).await;
    assert_eq!(s, 200, "{inbox}");
    assert_eq!(inbox["webhook_url"], url);
    assert_eq!(inbox["additional_attributes"], json!({"agent_reply_time_window": 48}));
    assert_eq!(h.sim.inbox()["webhook_url"], url);

    // With a window and no incoming message yet, agents cannot reply; one message opens it.
    assert_eq!(h.admin(Method::GET, &format!("/conversations/{conv}"), None).await.1["can_reply"], false);
    h.incoming(conv, "hello").await;
    assert_eq!(h.admin(Method::GET, &format!("/conversations/{conv}"), None).await.1["can_reply"], true);
    h.sim.settle().await;
    assert_eq!(rx.bodies().len(), 1, "the new URL got the message");

    let (s, err) = h
        .admin(Method::PATCH, "/inboxes/3", Some(json!({"channel": {"additional_attributes": {"agent_reply_time_window": 0}}})))
        .await;
    assert_eq!((s, err["attributes"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(["agent_reply_time_window"])));
}

// ---- faults --------------------------------------------------------------------------------

#[tokio::test]
async fn injected_faults_look_like_chatwoots() {
    let h = Harness::start(|_| {}).await;
    h.sim.fail_next(1, 429);
    let resp = h.raw(Some(ADMIN), Method::GET, "/inboxes/3", None).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_none(), "rack-attack sends no Retry-After");
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.text().await.unwrap(), "Retry later\n");
    assert_eq!(h.admin(Method::GET, "/inboxes/3", None).await.0, 200);

    h.sim.fail_next(1, 500);
    assert_eq!(
        h.admin(Method::POST, "/contacts", Some(json!({"identifier": "a"}))).await,
        (StatusCode::INTERNAL_SERVER_ERROR, json!({"status": 500, "error": "Internal Server Error"}))
    );
    assert!(h.sim.contacts().is_empty(), "a failed request does nothing");

    h.sim.set_down(true);
    let resp = h.raw(Some(ADMIN), Method::GET, "/api/v1/profile", None).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    h.sim.set_down(false);
    assert_eq!(h.admin(Method::GET, "/api/v1/profile", None).await.0, 200);

    // The same over /_sim, which is never counted as API traffic.
    let requests = h.sim.api_requests().len();
    let (s, _) = h.admin(Method::POST, "/_sim/faults", Some(json!({"fail_next": {"n": 1, "status": 502}}))).await;
    assert_eq!(s, 200);
    let resp = h.raw(Some(ADMIN), Method::GET, "/inboxes/3", None).await;
    assert_eq!(resp.status(), 502);
    let (_, conv) = h.customer("oControl").await;
    let (s, replied) =
        h.admin(Method::POST, &format!("/_sim/conversations/{conv}/reply"), Some(json!({"content": "from the dashboard"}))).await;
    assert_eq!(s, 200);
    let id = replied["id"].as_u64().unwrap();
    let (_, state) = h.admin(Method::GET, "/_sim/state", None).await;
    assert_eq!(state["conversations"][0]["messages"][0]["id"], id);
    assert_eq!(state["contacts"][0]["identifier"], "wechat:wx1:oControl");
    assert_eq!(h.sim.api_requests().len(), requests + 3, "the 502, and the customer's two calls");
}
