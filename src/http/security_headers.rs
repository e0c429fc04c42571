//! Browser security headers on every response (console, API, webhooks, errors).
//!
//! The console is the only page; it loads its script and style from its own origin and has no
//! inline script, style or event handler, so a strict policy costs nothing and stops injected
//! markup from running script, the console from being framed (clickjacking the retry buttons),
//! and responses from being sniffed into another content type.

use axum::http::HeaderValue;
use axum::http::header::{CONTENT_SECURITY_POLICY, HeaderName, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
use axum::response::Response;

/// `img-src data:` for the console's empty favicon (`<link rel="icon" href="data:,">`).
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const HEADERS: [(HeaderName, &str); 4] = [
    (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
    // For browsers without CSP `frame-ancestors`.
    (X_FRAME_OPTIONS, "DENY"),
    (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    // Console URLs may carry a stream ticket; never pass them on.
    (REFERRER_POLICY, "no-referrer"),
];

/// Sets the headers, replacing any a handler set.
pub async fn add_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
