//! Contacts and contact inboxes (`chatwoot-api.md §2.1`): create (with the contact inbox in the
//! same call), show, filter (identifier compared case-insensitively), search (`LIKE '%q%'` on the
//! identifier, `ILIKE` on name, email and phone; 15 a page), contact inboxes, and a contact's
//! conversations.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::error::ApiError;
use super::model::{Contact, ContactInbox, Principal, State, bool_param, id_param, object_param, secure_token, str_param};

/// `ContactsController::RESULTS_PER_PAGE`.
const PER_PAGE: usize = 15;
/// String columns default to 255 characters (CW `application_record.rb`).
const MAX_STRING: usize = 255;

impl State {
    /// `POST /contacts` (§2.1): validation (422), then the contact inbox when `inbox_id` is
    /// given (404 for an unknown inbox, 500 when another contact holds the `source_id`); all or
    /// nothing, like the controller's transaction.
    pub fn create_contact(&mut self, p: Principal, body: &Value) -> Result<Value, ApiError> {
        let blank_to_none = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        let name = blank_to_none(str_param(body, "name"));
        let email = blank_to_none(str_param(body, "email")).map(|e| e.trim().to_lowercase());
        let phone = blank_to_none(str_param(body, "phone_number"));
        let identifier = blank_to_none(str_param(body, "identifier"));

        // Contact validations, in the model's order; Rails reports them all at once.
        let mut errors: Vec<(&str, String)> = Vec::new();
        if let Some(e) = &email {
            if self.contacts.iter().any(|c| c.email.as_deref() == Some(e)) {
                errors.push(("email", "Email has already been taken".into()));
            }
            if !is_email(e) {
                errors.push(("email", "Email Invalid email".into()));
            }
        }
        if let Some(id) = &identifier {
            if self.contacts.iter().any(|c| c.identifier.as_deref() == Some(id)) {
                errors.push(("identifier", "Identifier has already been taken".into()));
            }
            if id.chars().count() > MAX_STRING {
                errors.push(("identifier", format!("Identifier is too long (maximum is {MAX_STRING} characters)")));
            }
        }
        if let Some(ph) = &phone {
            if self.contacts.iter().any(|c| c.phone_number.as_deref() == Some(ph)) {
                errors.push(("phone_number", "Phone number has already been taken".into()));
            }
            if !is_e164(ph) {
                errors.push(("phone_number", "Phone number should be in e164 format".into()));
            }
        }
        if name.as_ref().is_some_and(|n| n.chars().count() > MAX_STRING) {
            errors.push(("name", format!("Name is too long (maximum is {MAX_STRING} characters)")));
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(&errors));
        }

        let inbox = match id_param(body, "inbox_id") {
            Some(inbox_id) => Some(self.inbox(inbox_id).ok_or_else(ApiError::not_found)?.id),
            None if body.get("inbox_id").is_some_and(|v| !v.is_null() && v != "") => return Err(ApiError::not_found()),
            None => None,
        };
        let source_id = str_param(body, "source_id").filter(|s| !s.is_empty());
        if let (Some(inbox_id), Some(sid)) = (inbox, &source_id) {
            self.check_source_id(inbox_id, sid, None)?;
        }

        let now = SystemTime::now();
        let id = self.next_contact_id();
        self.contacts.push(Contact {
            id,
            name,
            email,
            phone_number: phone,
            identifier,
            blocked: bool_param(body, "blocked").unwrap_or(false),
            additional_attributes: object_param(body, "additional_attributes").unwrap_or_else(|| json!({})),
            custom_attributes: object_param(body, "custom_attributes").unwrap_or_else(|| json!({})),
            created_at: now,
            last_activity_at: None,
        });
        let contact_inbox = inbox.map(|inbox_id| self.find_or_create_contact_inbox(id, inbox_id, source_id));
        let admin = self.is_admin(p);
        let contact = self.contact(id).expect("just created");
        let contact_inbox = match contact_inbox.and_then(|ci_id| self.contact_inbox(ci_id)) {
            Some(ci) => json!({
                "inbox": self.inbox(ci.inbox_id).map(|i| self.inbox_record(i)),
                "source_id": ci.source_id,
            }),
            None => json!({"inbox": null, "source_id": null}),
        };
        Ok(json!({"payload": {"contact": self.contact_json(contact, true, admin), "contact_inbox": contact_inbox}}))
    }

    /// `ContactInboxBuilder` for API inboxes: another contact holding the `source_id` in that
    /// inbox re-raises `RecordNotUnique`, a 500 (§2.1).
    fn check_source_id(&self, inbox_id: u64, source_id: &str, owner: Option<u64>) -> Result<(), ApiError> {
        let taken = self
            .contact_inboxes
            .iter()
            .any(|ci| ci.inbox_id == inbox_id && ci.source_id == source_id && Some(ci.contact_id) != owner);
        if taken { Err(ApiError::internal()) } else { Ok(()) }
    }

    /// The contact's session in the inbox with that `source_id` (a UUID when none is given),
    /// reused when it exists. Returns its id.
    pub fn find_or_create_contact_inbox(&mut self, contact_id: u64, inbox_id: u64, source_id: Option<String>) -> u64 {
        let source_id = source_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let Some(ci) = self
            .contact_inboxes
            .iter()
            .find(|ci| ci.contact_id == contact_id && ci.inbox_id == inbox_id && ci.source_id == source_id)
        {
            return ci.id;
        }
        let id = self.next_contact_inbox_id();
        self.contact_inboxes.push(ContactInbox {
            id,
            contact_id,
            inbox_id,
            source_id,
            pubsub_token: secure_token(),
            created_at: SystemTime::now(),
        });
        id
    }

    /// `GET /contacts/{id}`: `{"payload": contact}`.
    pub fn show_contact(&self, p: Principal, id: u64) -> Result<Value, ApiError> {
        let c = self.contact(id).ok_or_else(ApiError::not_found)?;
        Ok(json!({"payload": self.contact_json(c, true, self.is_admin(p))}))
    }

    /// `POST /contacts/{id}/contact_inboxes {"inbox_id", "source_id"}` → `{source_id, inbox}`.
    pub fn create_contact_inbox(&mut self, p: Principal, contact_id: u64, body: &Value) -> Result<Value, ApiError> {
        self.contact(contact_id).ok_or_else(ApiError::not_found)?;
        let inbox_id = id_param(body, "inbox_id").and_then(|id| self.inbox(id)).ok_or_else(ApiError::not_found)?.id;
        let source_id = str_param(body, "source_id").filter(|s| !s.is_empty());
        if let Some(sid) = &source_id {
            self.check_source_id(inbox_id, sid, Some(contact_id))?;
        }
        let ci_id = self.find_or_create_contact_inbox(contact_id, inbox_id, source_id);
        let ci = self.contact_inbox(ci_id).expect("just made");
        Ok(self.contact_inbox_json(ci, self.is_admin(p)))
    }

    /// `POST /contacts/filter`: `payload` conditions on `name`, `email`, `phone_number` and
    /// `identifier` (`equal_to`/`not_equal_to` for the identifier, case-insensitive), joined by
    /// their `query_operator` (AND binds tighter than OR, as in the SQL built from them).
    pub fn filter_contacts(&self, p: Principal, body: &Value, page: usize) -> Result<Value, ApiError> {
        // A missing payload is a NoMethodError on nil in the filter service.
        let conditions = body.get("payload").and_then(Value::as_array).ok_or_else(ApiError::internal)?;
        let mut groups: Vec<Vec<Condition>> = vec![Vec::new()];
        for c in conditions {
            let cond = Condition::parse(c)?;
            let or_next = c.get("query_operator").and_then(Value::as_str).is_some_and(|q| q.eq_ignore_ascii_case("or"));
            groups.last_mut().expect("one group").push(cond);
            if or_next {
                groups.push(Vec::new());
            }
        }
        let matched: Vec<&Contact> = self
            .contacts
            .iter()
            .filter(|contact| groups.iter().filter(|g| !g.is_empty()).any(|g| g.iter().all(|cond| cond.matches(contact))))
            .collect();
        let admin = self.is_admin(p);
        let payload: Vec<Value> =
            matched.iter().skip((page - 1) * PER_PAGE).take(PER_PAGE).map(|c| self.contact_json(c, true, admin)).collect();
        Ok(json!({"meta": {"count": matched.len(), "current_page": page}, "payload": payload}))
    }

    /// `GET /contacts/search?q=`: `ILIKE '%q%'` on name, email and phone number, `LIKE '%q%'` on
    /// the identifier (case-sensitive, and `_`/`%` in `q` are wildcards), or the id itself for
    /// a number; 15 a page with `has_more`.
    pub fn search_contacts(&self, p: Principal, q: Option<&str>, page: usize) -> Result<Value, ApiError> {
        let q = q
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .ok_or_else(|| ApiError::unprocessable("Specify search string with parameter q"))?;
        let pattern = format!("%{q}%");
        let lower = pattern.to_lowercase();
        let numeric: Option<u64> = q.chars().all(|c| c.is_ascii_digit()).then(|| q.parse().ok()).flatten();
        let ilike = |v: &Option<String>| v.as_ref().is_some_and(|s| like(&s.to_lowercase(), &lower));
        let matched: Vec<&Contact> = self
            .contacts
            .iter()
            .filter(|c| {
                ilike(&c.name)
                    || ilike(&c.email)
                    || ilike(&c.phone_number)
                    || c.identifier.as_ref().is_some_and(|i| like(i, &pattern))
                    || numeric == Some(c.id)
            })
            .collect();
        let admin = self.is_admin(p);
        let page_items: Vec<Value> =
            matched.iter().skip((page - 1) * PER_PAGE).take(PER_PAGE).map(|c| self.contact_json(c, true, admin)).collect();
        let has_more = matched.len() > page * PER_PAGE;
        Ok(json!({"meta": {"count": page_items.len(), "current_page": page, "has_more": has_more}, "payload": page_items}))
    }

    /// `GET /contacts/{id}/conversations`: the 20 most recently active conversations of the
    /// contact in inboxes the principal sees.
    pub fn contact_conversations(&self, p: Principal, contact_id: u64) -> Result<Value, ApiError> {
        self.contact(contact_id).ok_or_else(ApiError::not_found)?;
        let mut convs: Vec<_> =
            self.conversations.iter().filter(|c| c.contact_id == contact_id && self.can_see_inbox(p, c.inbox_id)).collect();
        convs.sort_by(|a, b| b.last_activity_at.cmp(&a.last_activity_at).then(b.id.cmp(&a.id)));
        let payload: Vec<Value> = convs.into_iter().take(20).map(|c| self.conversation_json(c)).collect();
        Ok(json!({"payload": payload}))
    }
}

/// One filter condition.
struct Condition {
    key: String,
    operator: String,
    values: Vec<String>,
}

impl Condition {
    fn parse(c: &Value) -> Result<Self, ApiError> {
        let key = c.get("attribute_key").and_then(Value::as_str).unwrap_or_default().to_owned();
        let operator = c.get("filter_operator").and_then(Value::as_str).unwrap_or_default().to_owned();
        let allowed: &[&str] = match key.as_str() {
            "identifier" => &["equal_to", "not_equal_to"],
            "name" | "email" => &["equal_to", "not_equal_to", "contains", "does_not_contain"],
            "phone_number" => &["equal_to", "not_equal_to", "contains", "does_not_contain", "starts_with"],
            _ => {
                return Err(ApiError::unprocessable(format!(
                    "Invalid attribute key - [{key}]. The key should be one of [name,email,phone_number,identifier] \
                     or a custom attribute defined in the account."
                )));
            }
        };
        if !allowed.contains(&operator.as_str()) {
            return Err(ApiError::unprocessable(format!(
                "Invalid operator. The allowed operators for {key} are [{}].",
                allowed.join(",")
            )));
        }
        let values = match c.get("values") {
            Some(Value::Array(vs)) => vs.iter().filter_map(|v| str_param(&json!({"v": v}), "v")).collect(),
            Some(v) => str_param(&json!({"v": v}), "v").into_iter().collect(),
            None => Vec::new(),
        };
        Ok(Condition { key, operator, values })
    }

    fn matches(&self, c: &Contact) -> bool {
        let field = match self.key.as_str() {
            "identifier" => &c.identifier,
            "name" => &c.name,
            "email" => &c.email,
            _ => &c.phone_number,
        };
        let value = field.as_deref().map(str::to_lowercase);
        let values: Vec<String> = self.values.iter().map(|v| v.to_lowercase()).collect();
        let any = |f: &dyn Fn(&str, &str) -> bool| value.as_deref().is_some_and(|v| values.iter().any(|want| f(v, want)));
        match self.operator.as_str() {
            "equal_to" => any(&|v, w| v == w),
            // SQL: NULL never satisfies `!=`.
            "not_equal_to" => value.is_some() && !any(&|v, w| v == w),
            "contains" => any(&|v, w| v.contains(w)),
            "does_not_contain" => value.is_some() && !any(&|v, w| v.contains(w)),
            "starts_with" => any(&|v, w| v.starts_with(w)),
            _ => false,
        }
    }
}

/// SQL `LIKE` with PostgreSQL's default escape `\`: `%` any run, `_` any one character.
pub(crate) fn like(s: &str, pattern: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let mut p: Vec<(char, bool)> = Vec::new(); // (char, is a literal)
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => p.push((chars.next().unwrap_or('\\'), true)),
            c => p.push((c, false)),
        }
    }
    // Classic wildcard matching with backtracking on the last `%`.
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && !p[pi].1 && p[pi].0 == '%' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && ((!p[pi].1 && p[pi].0 == '_') || p[pi].0 == s[si]) {
            si += 1;
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && !p[pi].1 && p[pi].0 == '%' {
        pi += 1;
    }
    pi == p.len()
}

fn is_email(s: &str) -> bool {
    // Devise's default `email_regexp`: /\A[^@\s]+@[^@\s]+\z/.
    let mut parts = s.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None)
        if !a.is_empty() && !b.is_empty() && !s.chars().any(char::is_whitespace))
}

fn is_e164(s: &str) -> bool {
    // `/\+[1-9]\d{1,14}\z/`.
    let Some(digits) = s.strip_prefix('+') else { return false };
    (2..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_follows_sql() {
        assert!(like("wechat:wx1:oABC", "%oABC%"));
        assert!(!like("wechat:wx1:oABC", "%oabc%"));
        assert!(like("wechat:wx1:oXBC", "%o_BC%"), "_ matches one character");
        assert!(!like("wechat:wx1:oXBC", "%o\\_BC%"), "escaped _ is literal");
        assert!(like("abc", "%"));
        assert!(!like("abc", "%d%"));
    }
}
