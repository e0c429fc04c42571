//! The web console (assets embedded in the binary). In `demo`, the hooks of `crate::demo` let a
//! person play the customer and the agent from it.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::admin::AdminAccess;

const INDEX: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/style.css");

pub async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

pub async fn app_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS).into_response()
}

pub async fn style_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// `GET /api/session`: what the console must ask for before calling the API.
pub async fn session(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({"demo": state.demo.is_some(), "auth_required": matches!(state.admin, AdminAccess::Token(_))}))
}
