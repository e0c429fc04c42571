//! `demo`'s console hooks (`/api/demo/*`, behind the admin check): a person plays the customer
//! on the simulated channel and the agent on the simulated platform, from the browser.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

use crate::chatwoot::sim::{AgentReply, ChatwootSim};
use crate::http::AppState;
use crate::vonage::sim::VonageSim;
use crate::wechat::sim::{PushMode, WeChatSim};

/// `/demo/wechat`, `/demo/agent`, `/demo/close-window`: 404 unless the bridge runs as `demo`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/demo/wechat", post(demo_wechat))
        .route("/demo/agent", post(demo_agent))
        .route("/demo/close-window", post(demo_close_window))
}

/// The simulators of a running `demo`, and where the bridge's WeChat webhook is.
pub struct DemoHooks {
    pub wechat: WeChatSim,
    pub agent: DemoAgent,
    pub webhook_url: String,
}

/// Where the demo's agent writes: the Vonage simulator, the bridge's `/api/v1/messages`, or
/// the Chatwoot simulator's dashboard.
pub enum DemoAgent {
    Vonage(VonageSim),
    Chatwoot(ChatwootSim),
    /// The `webhook` platform: the API's URL and its bearer token.
    Webhook {
        messages_url: String,
        token: String,
    },
}

impl std::fmt::Debug for DemoHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoHooks").field("webhook_url", &self.webhook_url).finish_non_exhaustive()
    }
}

fn hooks(state: &AppState) -> Result<&Arc<DemoHooks>, Response> {
    state.demo.as_ref().ok_or_else(|| (StatusCode::NOT_FOUND, "only in demo").into_response())
}

fn bad(status: StatusCode, error: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": error.to_string()}))).into_response()
}

#[derive(Deserialize)]
pub struct PhoneMessage {
    openid: String,
    text: String,
}

/// `POST /api/demo/wechat`: the simulated WeChat server pushes a user's text to the bridge.
async fn demo_wechat(State(state): State<AppState>, Json(m): Json<PhoneMessage>) -> Response {
    let hooks = match hooks(&state) {
        Ok(h) => h,
        Err(r) => return r,
    };
    if m.openid.trim().is_empty() || m.text.trim().is_empty() {
        return bad(StatusCode::BAD_REQUEST, "openid and text are required");
    }
    let push = hooks.wechat.text(m.openid.trim(), &m.text);
    match hooks.wechat.push(&hooks.webhook_url, &push, PushMode::Safe).await {
        Ok(reply) => Json(json!({"status": reply.status, "body": reply.body})).into_response(),
        Err(e) => bad(StatusCode::BAD_GATEWAY, e),
    }
}

#[derive(Deserialize)]
pub struct AgentMessage {
    openid: String,
    text: String,
    #[serde(default)]
    via: Option<String>,
}

/// `POST /api/demo/agent`: an agent writes into the user's conversation on the Vonage
/// simulator, as a `custom:wechat:message` or a plain `message` event; or, on the `webhook`
/// platform, the app sends it through `POST /api/v1/messages`; or, on Chatwoot, the agent
/// answers in the simulated dashboard (the reply reaches the bridge by its webhook).
async fn demo_agent(State(state): State<AppState>, Json(m): Json<AgentMessage>) -> Response {
    let hooks = match hooks(&state) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let contact = match state.store.contact_by_channel_id(crate::wechat::webhook::CHANNEL, m.openid.trim()).await {
        Ok(Some(c)) => c,
        Ok(None) => return bad(StatusCode::NOT_FOUND, "this WeChat user has not written yet"),
        Err(e) => return bad(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let vonage = match &hooks.agent {
        DemoAgent::Vonage(vonage) => vonage,
        DemoAgent::Chatwoot(chatwoot) => {
            let Some(conversation) =
                contact.link(crate::chatwoot::PLATFORM, crate::chatwoot::CONVERSATION).and_then(|c| c.parse::<u64>().ok())
            else {
                return bad(StatusCode::CONFLICT, "the user's conversation is not created yet; try again in a moment");
            };
            let id = chatwoot.agent_reply(conversation, AgentReply::text(m.text.clone())).await;
            return Json(json!({"chatwoot_message": id})).into_response();
        }
        DemoAgent::Webhook { messages_url, token } => {
            let body = json!({"to": contact.channel_id, "content": m.text});
            return match reqwest::Client::new().post(messages_url).bearer_auth(token).json(&body).send().await {
                Ok(response) => {
                    Json(json!({"status": response.status().as_u16(), "body": response.text().await.unwrap_or_default()}))
                        .into_response()
                }
                Err(e) => bad(StatusCode::BAD_GATEWAY, e),
            };
        }
    };
    let Some(conversation) = contact.link(crate::vonage::PLATFORM, crate::vonage::CONVERSATION).map(str::to_string) else {
        return bad(StatusCode::CONFLICT, "the user's conversation is not created yet; try again in a moment");
    };
    let agent = vonage.create_agent("demo_agent", &conversation);
    let event = if m.via.as_deref() == Some("message") {
        json!({"type": "message", "from": agent, "body": {"message_type": "text", "text": m.text}})
    } else {
        json!({"type": "custom:wechat:message", "from": agent,
               "body": {"to": contact.channel_id, "from": "demo_agent", "content": m.text, "direction": "outbound"}})
    };
    match vonage.post_event_as_client(&conversation, event) {
        Ok(event) => Json(json!({"event": event})).into_response(),
        Err(e) => bad(StatusCode::BAD_REQUEST, e),
    }
}

#[derive(Deserialize)]
pub struct CloseWindow {
    openid: String,
}

/// `POST /api/demo/close-window`: WeChat now refuses replies to the user (45015), as it does 48
/// hours after their last message.
async fn demo_close_window(State(state): State<AppState>, Json(m): Json<CloseWindow>) -> Response {
    match hooks(&state) {
        Ok(hooks) => {
            hooks.wechat.close_window(m.openid.trim());
            Json(json!({"closed": m.openid})).into_response()
        }
        Err(r) => r,
    }
}
