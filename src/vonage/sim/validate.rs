//! The Conversation API's request rules (`vonage-api.md §2.3`): the shared
//! name/display_name/image_url/properties fields, the custom event type rule, and
//! `message` bodies. Problems are reported the way the real validator words them
//! (`"display_name" is not allowed to be empty`, test-automation enums).

use serde_json::Value;

use super::problem::Problem;

/// Largest serialised body of a custom event (`vonage-api.md §2.3`, "Custom event rules").
pub(crate) const MAX_CUSTOM_BODY_BYTES: usize = 4096;
/// Longest custom event type (`vonage-api.md §2.3`).
pub(crate) const MAX_CUSTOM_TYPE_CHARS: usize = 100;

/// Reads the common `name`, `display_name`, `image_url`, `properties` fields of a user
/// or conversation request, collecting every problem (`vonage-api.md §2.3`).
pub(super) struct NamedFields {
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub image_url: Option<String>,
    pub properties: Option<Value>,
}

pub(super) fn named_fields(
    body: &Value,
    allowed: &[&str],
    max_name: Option<usize>,
    max_display: Option<usize>,
) -> Result<NamedFields, Problem> {
    let Some(obj) = body.as_object() else {
        return Err(Problem::invalid("body", "\"value\" must be of type object"));
    };
    let mut bad: Vec<(String, String)> = Vec::new();
    for key in obj.keys() {
        // The API rejects unknown keys ("\"foo\" is not allowed", test-automation enums).
        if !allowed.contains(&key.as_str()) {
            bad.push((key.clone(), format!("\"{key}\" is not allowed")));
        }
    }
    let mut text = |key: &str, max: Option<usize>| -> Option<String> {
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => {
                bad.push((key.into(), format!("\"{key}\" is not allowed to be empty")));
                None
            }
            Some(Value::String(s)) => {
                if let Some(max) = max
                    && s.chars().count() > max
                {
                    bad.push((key.into(), format!("\"{key}\" length must be less than or equal to {max} characters long")));
                }
                Some(s.clone())
            }
            Some(_) => {
                bad.push((key.into(), format!("\"{key}\" must be a string")));
                None
            }
        }
    };
    let name = text("name", max_name);
    let display_name = text("display_name", max_display);
    let image_url = text("image_url", Some(2048));
    if let Some(u) = &image_url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        bad.push(("image_url".into(), "\"image_url\" must be a valid uri".into()));
    }
    let properties = match obj.get("properties") {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => {
            if let Some(ttl) = p.get("ttl")
                && !ttl.as_f64().is_some_and(|t| t >= 0.0)
            {
                bad.push(("ttl".into(), "\"ttl\" must be a number greater than or equal to 0".into()));
            }
            if let Some(cd) = p.get("custom_data")
                && !cd.is_object()
            {
                bad.push(("custom_data".into(), "\"custom_data\" must be of type object".into()));
            }
            Some(Value::Object(p.clone()))
        }
        Some(_) => {
            bad.push(("properties".into(), "\"properties\" must be of type object".into()));
            None
        }
    };
    if bad.is_empty() { Ok(NamedFields { name, display_name, image_url, properties }) } else { Err(Problem::validation(bad)) }
}

/// `^custom:[A-Za-z0-9:_-]+$`, at most 100 characters (`vonage-api.md §2.3`; colons are
/// allowed, so `custom:wechat:message` is valid).
pub(crate) fn valid_custom_type(t: &str) -> bool {
    t.len() <= MAX_CUSTOM_TYPE_CHARS
        && t.strip_prefix("custom:").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
        })
}

/// `message` bodies: `message_type` plus the matching payload (`vonage-api.md §2.3`,
/// "Other event types").
pub(super) fn validate_message_body(body: &Value) -> Result<(), Problem> {
    let mt = match body.get("message_type") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(Problem::invalid("message_type", "\"message_type\" must be a string"));
        }
        None => {
            return Err(Problem::invalid("message_type", "\"message_type\" is required"));
        }
    };
    match mt {
        "text" => match body.get("text") {
            Some(Value::String(s)) if !s.is_empty() => Ok(()),
            Some(Value::String(_)) => Err(Problem::invalid("text", "\"text\" is not allowed to be empty")),
            _ => Err(Problem::invalid("text", "\"text\" is required and must be a string")),
        },
        "image" | "audio" | "video" | "file" => match body.get(mt).and_then(|m| m.get("url")) {
            Some(Value::String(u)) if !u.is_empty() => Ok(()),
            _ => Err(Problem::invalid(&format!("{mt}.url"), format!("\"{mt}.url\" is required"))),
        },
        "location" => match body.get("location") {
            Some(l) if l.get("latitude").is_some() && l.get("longitude").is_some() => Ok(()),
            _ => Err(Problem::invalid("location", "\"location\" must have latitude and longitude")),
        },
        "custom" => match body.get("custom") {
            Some(Value::Object(_)) => Ok(()),
            _ => Err(Problem::invalid("custom", "\"custom\" must be of type object")),
        },
        other => Err(Problem::invalid(
            "message_type",
            format!("\"message_type\" must be one of [text, image, audio, video, file, location, custom], got \"{other}\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_type_rule() {
        assert!(valid_custom_type("custom:wechat:message"));
        assert!(valid_custom_type("custom:a-b_C9"));
        assert!(!valid_custom_type("custom:"));
        assert!(!valid_custom_type("custom:has space"));
        assert!(!valid_custom_type("custom:dot.ted"));
        assert!(!valid_custom_type("wechat:message"));
        let long = format!("custom:{}", "a".repeat(93));
        assert_eq!(long.len(), 100);
        assert!(valid_custom_type(&long));
        assert!(!valid_custom_type(&format!("{long}a")));
    }
}
