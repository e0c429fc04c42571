//! `api_access_token` authentication in the order Chatwoot's before-actions run it
//! (`chatwoot-api.md §1.2`, §4.2): the token (`authenticate_access_token!`), the agent-bot
//! whitelist (`validate_bot_access_token!`), then the account (`ensure_current_account`).

use axum::http::HeaderMap;

use super::error::ApiError;
use super::model::{Principal, State};
use super::{ChatwootSimConfig, Inner};

/// The controller actions the simulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Profile,
    InboxShow,
    InboxUpdate,
    ContactsCreate,
    ContactsShow,
    ContactsFilter,
    ContactsSearch,
    ContactInboxesCreate,
    ContactConversations,
    ConversationsCreate,
    ConversationsShow,
    ConversationsToggleStatus,
    MessagesIndex,
    MessagesCreate,
    MessagesUpdate,
    MessagesDestroy,
}

impl Endpoint {
    /// `BOT_ACCESSIBLE_ENDPOINTS` (CW `access_token_auth_helper.rb`): conversations `show`,
    /// `toggle_status`, `create` (and others not simulated) and messages `create`. Contacts,
    /// message listing and the status `PATCH` are not in it.
    fn bot_allowed(self) -> bool {
        matches!(
            self,
            Endpoint::ConversationsCreate
                | Endpoint::ConversationsShow
                | Endpoint::ConversationsToggleStatus
                | Endpoint::MessagesCreate
        )
    }
}

/// The `api_access_token` header (Rack also maps `api-access-token` to the same variable).
fn token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("api_access_token")
        .or_else(|| headers.get("api-access-token"))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn principal(cfg: &ChatwootSimConfig, st: &State, token: &str) -> Option<Principal> {
    if token == cfg.bot_token {
        return Some(Principal::Bot);
    }
    st.users.iter().find(|u| u.access_token == token).map(|u| Principal::User(u.id))
}

/// Checks the token, the bot whitelist and, for account routes, the account id in the path.
pub(crate) fn guard(
    inner: &Inner,
    headers: &HeaderMap,
    account: Option<&str>,
    endpoint: Endpoint,
) -> Result<Principal, ApiError> {
    let token = token(headers).ok_or_else(ApiError::invalid_token)?;
    let p = inner.read(|st| principal(&inner.cfg, st, token)).ok_or_else(ApiError::invalid_token)?;
    if p == Principal::Bot && !endpoint.bot_allowed() {
        return Err(ApiError::bots_not_allowed());
    }
    if let Some(account) = account {
        // `Account.find(params[:account_id])`: an id that is no account at all is a 404; the
        // simulator treats every other number as an account these principals do not belong to.
        let id: u64 = account.parse().map_err(|_| ApiError::not_found())?;
        if id != inner.cfg.account_id {
            return Err(ApiError::unauthorized(match p {
                Principal::User(_) => "You are not authorized to access this account",
                Principal::Bot => "Bot is not authorized to access this account",
            }));
        }
    }
    Ok(p)
}
