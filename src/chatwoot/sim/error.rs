//! Chatwoot's error answers (`chatwoot-api.md §4.2`): `{"error": …}` for 401/403/404 and most
//! 422s, `{"message", "attributes"}` for model validation, Rails' `{"status","error"}` for
//! unhandled exceptions, rack-attack's plain-text 429 (§4.1) and a proxy's HTML for 502–504.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One error answer. Build it with the constructors so the wording stays Chatwoot's.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Text(&'static str, String),
}

impl ApiError {
    fn json(status: StatusCode, v: Value) -> Self {
        ApiError { status, body: Body::Json(v) }
    }

    /// 401 `{"error": msg}`: auth failures and Pundit denials (401, not 403).
    pub fn unauthorized(msg: &str) -> Self {
        Self::json(StatusCode::UNAUTHORIZED, json!({"error": msg}))
    }

    pub fn invalid_token() -> Self {
        Self::unauthorized("Invalid Access Token")
    }

    pub fn bots_not_allowed() -> Self {
        Self::unauthorized("Access to this endpoint is not authorized for bots")
    }

    /// A Pundit denial.
    pub fn not_allowed() -> Self {
        Self::unauthorized("You are not authorized to do this action")
    }

    /// `RecordNotFound`.
    pub fn not_found() -> Self {
        Self::json(StatusCode::NOT_FOUND, json!({"error": "Resource could not be found"}))
    }

    /// 403 `{"error": msg}`.
    pub fn forbidden(msg: &str) -> Self {
        Self::json(StatusCode::FORBIDDEN, json!({"error": msg}))
    }

    /// `RecordInvalid`: `{"message": full messages joined by ", ", "attributes": [...]}`.
    pub fn invalid(errors: &[(&str, String)]) -> Self {
        let message = errors.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join(", ");
        let mut attributes: Vec<&str> = Vec::new();
        for (a, _) in errors {
            if !attributes.contains(a) {
                attributes.push(a);
            }
        }
        Self::json(StatusCode::UNPROCESSABLE_ENTITY, json!({"message": message, "attributes": attributes}))
    }

    /// 422 `{"error": msg}` (`render_could_not_create_error`, parameter errors).
    pub fn unprocessable(msg: impl Into<String>) -> Self {
        Self::json(StatusCode::UNPROCESSABLE_ENTITY, json!({"error": msg.into()}))
    }

    /// An unhandled exception in production Rails.
    pub fn internal() -> Self {
        Self::json(StatusCode::INTERNAL_SERVER_ERROR, json!({"status": 500, "error": "Internal Server Error"}))
    }

    /// A body Rails could not parse (`ActionDispatch::Http::Parameters::ParseError`).
    pub fn bad_request() -> Self {
        Self::json(StatusCode::BAD_REQUEST, json!({"status": 400, "error": "Bad Request"}))
    }

    /// An unknown route.
    pub fn no_route() -> Self {
        Self::json(StatusCode::NOT_FOUND, json!({"status": 404, "error": "Not Found"}))
    }

    /// rack-attack's throttled answer: no `Retry-After` (§4.1).
    pub fn throttled() -> Self {
        ApiError { status: StatusCode::TOO_MANY_REQUESTS, body: Body::Text("text/plain", "Retry later\n".into()) }
    }

    /// What a failing installation answers with `status`, as injected by `fail_next`.
    pub fn injected(status: u16) -> Self {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match code.as_u16() {
            429 => Self::throttled(),
            401 => Self::invalid_token(),
            404 => Self::not_found(),
            500 => Self::internal(),
            502..=504 => Self::proxy_page(code),
            422 => Self::unprocessable("Injected failure"),
            s => Self::json(code, json!({"status": s, "error": code.canonical_reason().unwrap_or("Error")})),
        }
    }

    /// The HTML page a reverse proxy (nginx) shows when Rails is not answering.
    pub fn proxy_page(code: StatusCode) -> Self {
        let title = format!("{} {}", code.as_u16(), code.canonical_reason().unwrap_or(""));
        let html = format!(
            "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n\
             <hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        );
        ApiError { status: code, body: Body::Text("text/html", html) }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.body {
            Body::Json(v) => write!(f, "{} {v}", self.status.as_u16()),
            Body::Text(_, t) => write!(f, "{} {}", self.status.as_u16(), t.trim()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.body {
            Body::Json(v) => (self.status, axum::Json(v)).into_response(),
            Body::Text(ct, text) => {
                let mut resp = (self.status, text).into_response();
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
                resp
            }
        }
    }
}
