//! A built-in simulator of Chatwoot (v4.15.1) as an API inbox (`Channel::Api`) sees it: the
//! Application API the bridge calls and the inbox webhook Chatwoot calls back.
//!
//! It is product code: `wechat-bridge simulate chatwoot` serves it alone, and the bridge's tests
//! and demo run it in-process. So it answers like the real service, traps included
//! (`chatwoot-api.md`; section numbers in comments refer to it):
//!
//! - `api_access_token` auth with three principals: an administrator user ("WeChat Bridge", not an
//!   inbox member), an agent user ("Agent Li", member of the API inbox) and an agent bot whose
//!   token only reaches the bot whitelist (§1.2, §4.2);
//! - inboxes (`GET`/`PATCH …/inboxes/{id}`, admin-only secrets, §1.1), contacts with unique
//!   identifiers, filter and LIKE search (§2.1), conversations with per-account display ids and
//!   `toggle_status` (§2.2), messages as JSON or multipart with attachments, the 200-per-minute
//!   flood limit, reopening of resolved conversations, `after`/`before` paging (§2.3, §3.6) and
//!   the status `PATCH` (§5.1), with Chatwoot's error shapes (§4.2);
//! - attachment downloads through an ActiveStorage-style redirect (§2.3, §3.3);
//! - the inbox webhook: `message.webhook_data` payloads, fire-once through one in-order queue like
//!   Sidekiq, signed with the channel `secret` when it has one (≥ v4.13, §3.5), a failure marking
//!   the message `failed` with `external_error` (§0.2, §3.2).
//!
//! On top of that: fault injection (`fail_next`, `set_down`, `POST /_sim/faults`), inspection
//! (`contacts`, `messages`, `webhooks`, …, `GET /_sim/state`) and what agents do in the dashboard
//! (`agent_reply`, `retry`, `delete_message`, `resolve`, also under `/_sim`).

mod auth;
mod contacts;
mod control;
mod conversations;
mod error;
mod json;
mod messages;
mod model;
mod routes;
mod storage;
mod webhook;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;

use model::{AGENT_USER_ID, Sender, State};
use webhook::Hooks;

/// How the simulated Chatwoot account is set up.
#[derive(Debug, Clone)]
pub struct ChatwootSimConfig {
    /// The account id in every `/api/v1/accounts/{account_id}/…` path.
    pub account_id: u64,
    /// The API inbox (`Channel::Api`). Inbox `inbox_id + 1` is a web widget ("Website").
    pub inbox_id: u64,
    /// User access token of an administrator, "WeChat Bridge", who is not an inbox member (§1.2).
    pub admin_token: String,
    /// User access token of an agent, "Agent Li", member of the API inbox only.
    pub agent_token: String,
    /// Access token of an agent bot of the account: only the bot whitelist (§1.2).
    pub bot_token: String,
    /// The API channel's `secret`: `Some` signs every webhook like Chatwoot ≥ 4.13 (§3.5);
    /// `None` sends them unsigned like 4.11.2–4.12 (§0.1).
    pub inbox_secret: Option<String>,
    /// The inbox's `webhook_url` at start.
    pub webhook_url: Option<String>,
    /// `WEBHOOK_TIMEOUT`: open and read timeout of each webhook request (default 5 s, §3.2).
    pub webhook_timeout: Duration,
}

impl ChatwootSimConfig {
    /// Account 1, API inbox 3, the `sim-…` tokens, secret `sim-inbox-secret`, no webhook URL.
    pub fn new() -> Self {
        ChatwootSimConfig {
            account_id: 1,
            inbox_id: 3,
            admin_token: "sim-admin-token".into(),
            agent_token: "sim-agent-token".into(),
            bot_token: "sim-bot-token".into(),
            inbox_secret: Some("sim-inbox-secret".into()),
            webhook_url: None,
            webhook_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for ChatwootSimConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// A file: an attachment as uploaded or as served back.
#[derive(Debug, Clone, PartialEq)]
pub struct SimFile {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// What an agent sends from the dashboard (see [`ChatwootSim::agent_reply`]).
#[derive(Debug, Clone)]
pub struct AgentReply {
    pub content: String,
    /// A private note: agents only, still sent to the webhook with `private: true` (§3.1).
    pub private: bool,
    /// A `template` message (greeting, out-of-office, CSAT: no sender, §3.4).
    pub template: bool,
    pub attachments: Vec<SimFile>,
    /// Sent by the account's agent bot instead of "Agent Li".
    pub by_bot: bool,
}

impl AgentReply {
    /// A public outgoing text from "Agent Li".
    pub fn text(s: impl Into<String>) -> Self {
        AgentReply { content: s.into(), private: false, template: false, attachments: Vec::new(), by_bot: false }
    }

    /// A private note from "Agent Li".
    pub fn private_note(s: impl Into<String>) -> Self {
        AgentReply { private: true, ..Self::text(s) }
    }

    /// The same reply with one more attachment.
    pub fn with_attachment(mut self, f: SimFile) -> Self {
        self.attachments.push(f);
        self
    }
}

/// One webhook attempt (there is only ever one per event: fire-once, §3.2).
#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub event: String,
    /// The message id of `message_created` / `message_updated`.
    pub message_id: Option<u64>,
    /// The HTTP status the receiver answered, if it answered.
    pub status: Option<u16>,
    /// Why the attempt failed (the text Chatwoot stores as `external_error`), if it failed.
    pub error: Option<String>,
    /// The JSON body sent.
    pub body: Value,
    /// Whether it carried `X-Chatwoot-Timestamp` and `X-Chatwoot-Signature`.
    pub signed: bool,
}

/// The simulator. Cheap to clone (clones share one state); serve [`router`](Self::router).
#[derive(Clone)]
pub struct ChatwootSim {
    inner: Arc<Inner>,
}

/// Injected faults for the `/api` routes.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub fail_queue: VecDeque<u16>,
    pub down: bool,
    /// API requests still to be handled but answered 504, as if the answer were lost.
    pub lose_answers: usize,
}

/// Bookkeeping that is not Chatwoot data.
#[derive(Debug, Default)]
pub(crate) struct Meta {
    pub requests: Vec<(String, String)>,
    pub faults: Faults,
    /// Times of recent `contacts/search` calls, for the 100/min throttle (§4.1).
    pub searches: VecDeque<Instant>,
    /// `http://<Host>` of the latest API request: the base of links made outside a request.
    pub last_base: Option<String>,
}

pub(crate) struct Inner {
    pub cfg: ChatwootSimConfig,
    pub state: Mutex<State>,
    pub meta: Mutex<Meta>,
    pub hooks: Hooks,
    /// This `Inner` itself, for the webhook worker (which must not keep the simulator alive).
    pub me: Weak<Inner>,
}

impl Inner {
    pub fn meta(&self) -> MutexGuard<'_, Meta> {
        self.meta.lock().expect("chatwoot sim meta lock")
    }

    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.lock().expect("chatwoot sim state lock"))
    }

    /// Runs a mutation, then queues the webhooks it caused before releasing the lock (so the
    /// queue order is the order of the changes). Returns the queue numbers of those webhooks.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut State) -> R) -> (R, Vec<u64>) {
        let mut st = self.state.lock().expect("chatwoot sim state lock");
        let out = f(&mut st);
        let events: Vec<_> = st.outbox.drain(..).collect();
        // The listener reads the inbox's webhook_url when the event happens; without one,
        // nothing is queued (CW `webhook_listener.rb`).
        let seqs = match st.api_inbox().webhook_url.clone().filter(|u| !u.trim().is_empty()) {
            Some(url) => events.into_iter().map(|ev| self.hooks.enqueue(&self.me, &url, ev)).collect(),
            None => Vec::new(),
        };
        (out, seqs)
    }

    /// Like [`mutate`](Self::mutate), for callers that do not wait for the webhooks.
    pub fn apply<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        self.mutate(f).0
    }

    pub fn base(&self) -> String {
        self.meta().last_base.clone().unwrap_or_else(|| "http://localhost".to_owned())
    }
}

impl ChatwootSim {
    /// Builds a simulator. Webhooks start flowing once it is used inside a tokio runtime.
    pub fn new(config: ChatwootSimConfig) -> Self {
        let hooks = Hooks::new(config.webhook_timeout);
        let state = State::new(&config);
        let inner = Arc::new_cyclic(|me| Inner {
            cfg: config,
            state: Mutex::new(state),
            meta: Mutex::new(Meta::default()),
            hooks,
            me: me.clone(),
        });
        ChatwootSim { inner }
    }

    /// The configuration the simulator was built with.
    pub fn config(&self) -> &ChatwootSimConfig {
        &self.inner.cfg
    }

    /// The HTTP side: `/api/v1/…`, the attachment downloads under `/rails/active_storage/…`,
    /// and the simulator's own `/_sim/…` control endpoints.
    pub fn router(&self) -> axum::Router {
        routes::router(self.inner.clone())
    }

    /// Sets or clears the API inbox's `webhook_url`, as `PATCH …/inboxes/{id}` would.
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.inner.apply(|st| st.api_inbox_mut().webhook_url = url);
    }

    /// The API inbox as `GET …/inboxes/{id}` shows it to an administrator (§1.1).
    pub fn inbox(&self) -> Value {
        self.inner.read(|st| st.inbox_json(st.api_inbox(), true))
    }

    // ---- inspection ----------------------------------------------------------------------

    /// Every contact as the REST API shows it (with `contact_inboxes`), in creation order.
    pub fn contacts(&self) -> Vec<Value> {
        self.inner.read(|st| st.contacts.iter().map(|c| st.contact_json(c, true, true)).collect())
    }

    /// Every conversation as the REST API shows it (`id` is the display id), in creation order.
    pub fn conversations(&self) -> Vec<Value> {
        self.inner.read(|st| st.conversations.iter().map(|c| st.conversation_json(c)).collect())
    }

    /// The messages of a conversation as the REST API shows them, oldest first, activity
    /// messages and private notes included (empty for an unknown conversation).
    pub fn messages(&self, conversation_display_id: u64) -> Vec<Value> {
        self.inner.read(|st| match st.conversation_by_display(conversation_display_id) {
            Some(conv) => st.messages.iter().filter(|m| m.conversation_id == conv.id).map(|m| st.message_json(m, None)).collect(),
            None => Vec::new(),
        })
    }

    /// An attachment's file, while its message still has it.
    pub fn attachment(&self, attachment_id: u64) -> Option<SimFile> {
        self.inner.read(|st| st.attachments.iter().find(|a| a.id == attachment_id).map(|a| a.file.clone()))
    }

    /// Every webhook attempted so far, in order.
    pub fn webhooks(&self) -> Vec<WebhookRecord> {
        self.inner.hooks.records()
    }

    /// `(METHOD, path)` of every API request received (not `/_sim`, not downloads), in order.
    pub fn api_requests(&self) -> Vec<(String, String)> {
        self.inner.meta().requests.clone()
    }

    /// Waits until the webhook queue is empty (every queued webhook attempted).
    pub async fn settle(&self) {
        self.inner.hooks.settle().await;
    }

    // ---- what agents do in the dashboard -------------------------------------------------

    /// Creates the reply as Chatwoot does (outgoing, template or private note; attachments
    /// stored and downloadable) and returns its id once its `message_created` webhook has been
    /// attempted, and any `message_updated` a failure of it caused: on failure the message is
    /// already `failed` with `external_error` (§3.2).
    ///
    /// # Panics
    /// If the conversation does not exist or Chatwoot would refuse the message (flood limit).
    pub async fn agent_reply(&self, conversation_display_id: u64, reply: AgentReply) -> u64 {
        let base = self.inner.base();
        let (result, seqs) = self.inner.mutate(|st| st.agent_reply(conversation_display_id, &reply, &base));
        let id = result.unwrap_or_else(|e| panic!("agent_reply({conversation_display_id}): {e}"));
        self.inner.hooks.wait_chain(seqs).await;
        id
    }

    /// The dashboard's Retry on a message (§5.3): status `sent`, then `content_attributes`
    /// cleared, two updates and so two `message_updated` webhooks, as Chatwoot v4.15.1 does it.
    /// Nothing is re-sent anywhere. Returns once those webhooks have been attempted.
    ///
    /// # Panics
    /// If the message does not exist.
    pub async fn retry(&self, message_id: u64) {
        let (found, seqs) = self.inner.mutate(|st| st.retry_message(message_id));
        assert!(found, "retry({message_id}): no such message");
        self.inner.hooks.wait_chain(seqs).await;
    }

    /// An agent deletes a message: content "This message was deleted", `content_attributes`
    /// `{"deleted": true}`, attachments dropped, one `message_updated`.
    ///
    /// # Panics
    /// If the message does not exist.
    pub async fn delete_message(&self, message_id: u64) {
        let (found, seqs) = self.inner.mutate(|st| st.delete_message(message_id));
        assert!(found, "delete_message({message_id}): no such message");
        self.inner.hooks.wait_chain(seqs).await;
    }

    /// "Agent Li" resolves the conversation: `conversation_status_changed` and
    /// `conversation_updated` with `changed_attributes`, and an activity message.
    ///
    /// # Panics
    /// If the conversation does not exist.
    pub async fn resolve(&self, conversation_display_id: u64) {
        let (found, seqs) = self.inner.mutate(|st| {
            let pos = st.conversation_pos(conversation_display_id)?;
            st.change_status(pos, model::ConvStatus::Resolved, Sender::User(AGENT_USER_ID));
            Some(())
        });
        assert!(found.is_some(), "resolve({conversation_display_id}): no such conversation");
        self.inner.hooks.wait_chain(seqs).await;
    }

    // ---- faults --------------------------------------------------------------------------

    /// The next `n` API requests are answered `status` without doing anything, in Chatwoot's
    /// shape for it: 429 `text/plain` "Retry later" without `Retry-After` (rack-attack, §4.1),
    /// 500 `{"status":500,"error":"Internal Server Error"}`, 502/503/504 an HTML proxy page,
    /// 401/404/422 the API's JSON errors.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut meta = self.inner.meta();
        meta.faults.fail_queue.extend(std::iter::repeat_n(status, n));
    }

    /// The next `n` API requests are handled (their data saved) but answered 504, as when a
    /// proxy times out after Chatwoot committed: the caller cannot know it landed.
    pub fn lose_next_answers(&self, n: usize) {
        self.inner.meta().faults.lose_answers += n;
    }

    /// While `true`, every API request answers 503 (an HTML proxy page).
    pub fn set_down(&self, down: bool) {
        self.inner.meta().faults.down = down;
    }
}
