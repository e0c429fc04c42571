//! Cursor pagination as the v1 list endpoints do it (`vonage-api.md §2.3`, "List events
//! (v1) and cursor pagination"): `page_size` 1–100 (default 10), `order` asc|desc (either
//! case), and an opaque `cursor` that clients are expected to take from
//! `_links.next.href`, never to build themselves.
//!
//! The simulator's cursor is keyed (it names the last item returned, not an offset), so
//! items appended while a client pages through never shift or repeat a page.

use base64::Engine as _;
use serde_json::{Value, json};

use super::problem::Problem;

/// Query parameters as received, in order (`cursor` included).
pub(crate) type Query = [(String, String)];

/// The first value of a query parameter.
pub(crate) fn param<'a>(q: &'a Query, name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Parsed paging parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Page {
    pub size: usize,
    pub desc: bool,
    /// Key of the last item of the previous page, from the cursor.
    pub after: Option<u64>,
}

impl Page {
    pub fn parse(q: &Query) -> Result<Page, Problem> {
        let mut bad = Vec::new();
        let size = match param(q, "page_size") {
            None => 10,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    bad.push(("page_size".to_owned(), "\"page_size\" must be an integer between 1 and 100".to_owned()));
                    10
                }
            },
        };
        let desc = match param(q, "order") {
            None | Some("asc") | Some("ASC") => false,
            Some("desc") | Some("DESC") => true,
            Some(_) => {
                bad.push(("order".to_owned(), "\"order\" must be one of [asc, desc, ASC, DESC]".to_owned()));
                false
            }
        };
        let after = match param(q, "cursor") {
            None | Some("") => None,
            Some(c) => match decode_cursor(c) {
                Some(k) => Some(k),
                None => {
                    bad.push(("cursor".to_owned(), "\"cursor\" is invalid".to_owned()));
                    None
                }
            },
        };
        if bad.is_empty() { Ok(Page { size, desc, after }) } else { Err(Problem::validation(bad)) }
    }

    /// Orders `items` (key, value) by key in the requested direction, skips up to the
    /// cursor and cuts one page. Returns the page and, when more items follow, the key
    /// to put in the next cursor.
    pub fn cut(&self, mut items: Vec<(u64, Value)>) -> (Vec<Value>, Option<u64>) {
        items.sort_by_key(|(k, _)| *k);
        if self.desc {
            items.reverse();
        }
        if let Some(after) = self.after {
            items.retain(|(k, _)| if self.desc { *k < after } else { *k > after });
        }
        let more = items.len() > self.size;
        items.truncate(self.size);
        let next = if more { items.last().map(|(k, _)| *k) } else { None };
        (items.into_iter().map(|(_, v)| v).collect(), next)
    }
}

fn encode_cursor(key: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("vsim:{key}"))
}

fn decode_cursor(cursor: &str) -> Option<u64> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    std::str::from_utf8(&raw).ok()?.strip_prefix("vsim:")?.parse().ok()
}

/// `_links` for a list answer: `self` (the request as made), `first` (without cursor)
/// and, when there is more, `next` carrying the cursor.
pub(crate) fn links(base: &str, path: &str, q: &Query, next: Option<u64>) -> Value {
    let url = |pairs: &[(String, String)]| {
        if pairs.is_empty() {
            format!("{base}{path}")
        } else {
            let qs: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", crate::urlencode(k), crate::urlencode(v))).collect();
            format!("{base}{path}?{}", qs.join("&"))
        }
    };
    let without_cursor: Vec<(String, String)> = q.iter().filter(|(k, _)| k != "cursor").cloned().collect();
    let mut out = json!({
        "self": {"href": url(q)},
        "first": {"href": url(&without_cursor)},
    });
    if let Some(key) = next {
        let mut with_next = without_cursor.clone();
        with_next.push(("cursor".to_owned(), encode_cursor(key)));
        out["next"] = json!({"href": url(&with_next)});
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn cursor_round_trip_and_pages() {
        let items: Vec<(u64, Value)> = (1..=5).map(|k| (k, json!(k))).collect();
        let p = Page::parse(&q(&[("page_size", "2")])).unwrap();
        let (page, next) = p.cut(items.clone());
        assert_eq!(page, vec![json!(1), json!(2)]);
        let l = links("http://h", "/v1/x", &q(&[("page_size", "2")]), next);
        let href = l["next"]["href"].as_str().unwrap();
        let cursor = href.split("cursor=").nth(1).unwrap();
        let p2 = Page::parse(&q(&[("page_size", "2"), ("cursor", cursor)])).unwrap();
        assert_eq!(p2.cut(items.clone()).0, vec![json!(3), json!(4)]);
        let desc = Page::parse(&q(&[("order", "DESC"), ("page_size", "3")])).unwrap();
        let (page, next) = desc.cut(items);
        assert_eq!(page, vec![json!(5), json!(4), json!(3)]);
        assert_eq!(next, Some(3));
    }

    #[test]
    fn rejects_bad_params() {
        assert!(Page::parse(&q(&[("page_size", "0")])).is_err());
        assert!(Page::parse(&q(&[("page_size", "101")])).is_err());
        assert!(Page::parse(&q(&[("order", "up")])).is_err());
        assert!(Page::parse(&q(&[("cursor", "!!")])).is_err());
    }
}
