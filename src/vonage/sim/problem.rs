//! RFC 7807 error bodies as the Conversation API writes them (`vonage-api.md §5`):
//! `application/problem+json` with `type`, `title`, `detail`, `instance`, plus the
//! Conversation API's own `code` and, for validation failures, `invalid_parameters`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One RFC 7807 error answer. Build it with the constructors below so the wording stays
/// the same everywhere; `into_response` renders it. Boxed so `Result<_, Problem>` stays
/// small on the happy path.
#[derive(Debug, Clone)]
pub(crate) struct Problem(Box<ProblemData>);

#[derive(Debug, Clone)]
pub(crate) struct ProblemData {
    pub status: StatusCode,
    pub title: String,
    /// Conversation API error code, e.g. `conversation:error:not-found`. `None` for the
    /// Application API, whose errors carry no `code`.
    pub code: Option<String>,
    pub detail: String,
    /// Overrides the default `type` URL (`https://developer.vonage.com/api/conversation#<code>`).
    pub type_url: Option<String>,
    pub invalid_parameters: Vec<(String, String)>,
    pub retry_after: Option<u64>,
    /// Overrides the random `instance` (a trace id on the real service).
    pub instance: Option<String>,
}

impl std::ops::Deref for Problem {
    type Target = ProblemData;
    fn deref(&self) -> &ProblemData {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemData {
        &mut self.0
    }
}

impl Problem {
    pub fn new(status: StatusCode, title: &str, code: &str, detail: impl Into<String>) -> Self {
        Problem(Box::new(ProblemData {
            status,
            title: title.to_owned(),
            code: Some(code.to_owned()),
            detail: detail.into(),
            type_url: None,
            invalid_parameters: Vec::new(),
            retry_after: None,
            instance: None,
        }))
    }

    /// `http:error:validation-fail` with one `invalid_parameters` entry per reason.
    /// The real `detail` is "Input validation failure."; the reasons are appended so a
    /// log line names the problem without opening `invalid_parameters`.
    pub fn validation(params: Vec<(String, String)>) -> Self {
        let reasons: Vec<&str> = params.iter().map(|(_, r)| r.as_str()).collect();
        let mut p = Problem::new(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "http:error:validation-fail",
            format!("Input validation failure. {}", reasons.join("; ")),
        );
        p.invalid_parameters = params;
        p
    }

    /// Shorthand for a single-parameter validation failure.
    pub fn invalid(name: &str, reason: impl Into<String>) -> Self {
        Problem::validation(vec![(name.to_owned(), reason.into())])
    }

    pub fn invalid_token() -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "system:error:invalid-token",
            "You did not provide a valid token. Please provide a valid token.",
        )
    }

    pub fn expired_token() -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "system:error:expired-token",
            "You provided an expired token. Please provide a valid token.",
        )
    }

    pub fn conversation_not_found() -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "Not found.",
            "conversation:error:not-found",
            "Conversation does not exist, or you do not have access.",
        )
    }

    pub fn user_not_found() -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "Not found.",
            "user:error:not-found",
            "User does not exist, or you do not have access.",
        )
    }

    pub fn member_not_found() -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "Not found.",
            "member:error:not-found",
            "Member does not exist, or you do not have access.",
        )
    }

    pub fn event_not_found() -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "Not found.",
            "event:error:not-found",
            "Event does not exist, or you do not have access.",
        )
    }

    pub fn invalid_event(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "Bad Request", "conversation:error:invalid-event", detail)
    }

    /// 429 exactly as the JAVA SDK's recorded sample (`vonage-api.md §5`), with a fresh
    /// 32-hex trace id in `instance`.
    pub fn too_many_requests() -> Self {
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests.",
            "http:error:too-many-request",
            "You have exceeded your request limit. You can try again shortly.",
        );
        p.type_url = Some("https://developer.nexmo.com/api/conversation#http:error:too-many-request".into());
        p.instance = Some(uuid::Uuid::new_v4().simple().to_string());
        p
    }

    /// The answer for an injected fault with the given status (`fail_next`, `set_down`).
    pub fn for_status(status: u16) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let title = status.canonical_reason().unwrap_or("Error");
        match status.as_u16() {
            429 => Problem::too_many_requests(),
            401 => Problem::invalid_token(),
            500 => {
                Problem::new(status, title, "http:error:db-unavailable", "The database is unavailable. Please try again later.")
            }
            501..=599 => Problem::new(
                status,
                title,
                "http:error:service-not-available",
                "The service is not available. Please try again later.",
            ),
            400 => Problem::invalid("request", "Injected failure"),
            403 => Problem::new(status, title, "system:error:permission", "You do not have permission to perform this action."),
            404 => Problem::new(status, title, "http:error:not-found", "The requested resource does not exist."),
            _ => Problem::new(status, title, "http:error:unknown", "Injected failure."),
        }
    }

    pub fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after = secs;
        self
    }

    /// The JSON body (also used by `post_event_as_client` to describe a rejection).
    pub fn body(&self) -> Value {
        let mut body = json!({
            "title": self.title,
            "detail": self.detail,
            "instance": self.instance.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        });
        let type_url = match (&self.type_url, &self.code) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(code)) => Some(format!("https://developer.vonage.com/api/conversation#{code}")),
            (None, None) => None,
        };
        if let Some(t) = type_url {
            body["type"] = json!(t);
        }
        if let Some(code) = &self.code {
            body["code"] = json!(code);
        }
        if !self.invalid_parameters.is_empty() {
            body["invalid_parameters"] =
                self.invalid_parameters.iter().map(|(name, reason)| json!({"name": name, "reason": reason})).collect();
        }
        body
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code.as_deref().unwrap_or("-"), self.detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).expect("problem body serialises");
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        h.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static("en"));
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
