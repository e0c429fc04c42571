//! A safe, minimal reader for WeChat's flat push XML (`wechat-api.md` §2.5): every element below
//! `<xml>` as text keyed by its path; any DOCTYPE or entity declaration refused (no XXE, no
//! billion laughs); nesting bounded. Built on quick-xml's pull reader.

use std::collections::BTreeMap;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event as XmlEvent};
use quick_xml::reader::Reader;

use super::message::{Fields, MessageError};

/// Maximum element nesting, counting `<xml>` as depth 1.
pub const MAX_DEPTH: usize = 8;

pub(crate) fn malformed(what: impl Into<String>) -> MessageError {
    MessageError::Malformed(what.into())
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Element names: a letter, `_` or `:` first, then letters, digits, `_ - . :` (any script).
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// An open element while reading.
#[derive(Default)]
struct Frame {
    path: String,
    /// Character data; `true` marks literal pieces (CDATA, references), which are never trimmed.
    pieces: Vec<(String, bool)>,
    has_children: bool,
    child_counts: BTreeMap<String, usize>,
}

/// The state of [`parse_fields`].
#[derive(Default)]
struct Doc {
    stack: Vec<Frame>,
    fields: Fields,
    root_seen: bool,
}

impl Doc {
    /// A start tag, or an empty-element tag when `empty`.
    fn open(&mut self, tag: &BytesStart<'_>, empty: bool) -> Result<(), MessageError> {
        let name = tag.name().into_inner();
        if !valid_name(name) {
            return Err(malformed(format!("invalid element name {name:?}")));
        }
        if let Some(Err(err)) = tag.attributes().find(Result::is_err) {
            return Err(malformed(format!("bad attribute in <{name}>: {err}")));
        }
        let depth = self.stack.len();
        let Some(parent) = self.stack.last_mut() else {
            if self.root_seen {
                return Err(malformed("content after the root element"));
            }
            if name != "xml" {
                return Err(malformed(format!("root element must be <xml>, found <{name}>")));
            }
            self.root_seen = true;
            if !empty {
                self.stack.push(Frame::default());
            }
            return Ok(());
        };
        if depth >= MAX_DEPTH {
            return Err(MessageError::TooDeep);
        }
        parent.has_children = true;
        let count = parent.child_counts.entry(name.to_owned()).or_insert(0);
        *count += 1;
        let segment = if *count == 1 { name.to_owned() } else { format!("{name}[{count}]") };
        let path = if parent.path.is_empty() { segment } else { format!("{}.{segment}", parent.path) };
        if empty {
            self.fields.insert(path, String::new());
        } else {
            self.stack.push(Frame { path, ..Frame::default() });
        }
        Ok(())
    }

    /// An end tag (quick-xml has already checked that it matches).
    fn close(&mut self) -> Result<(), MessageError> {
        let frame = self.stack.pop().ok_or_else(|| malformed("unmatched end tag"))?;
        if self.stack.is_empty() {
            return Ok(()); // </xml>
        }
        let value = join_pieces(frame.pieces);
        if !frame.has_children || !value.is_empty() {
            self.fields.insert(frame.path, value);
        }
        Ok(())
    }

    /// Character data; only whitespace may stand outside the fields.
    fn text(&mut self, piece: String, literal: bool) -> Result<(), MessageError> {
        if self.stack.len() > 1
            && let Some(frame) = self.stack.last_mut()
        {
            frame.pieces.push((piece, literal));
        } else if literal || !piece.chars().all(is_xml_space) {
            return Err(malformed("text outside a field"));
        }
        Ok(())
    }

    fn finish(self) -> Result<Fields, MessageError> {
        match self.stack.last() {
            _ if !self.root_seen => Err(malformed("empty document: no <xml> root")),
            Some(frame) if frame.path.is_empty() => Err(malformed("unclosed <xml>")),
            Some(frame) => Err(malformed(format!("unclosed element <{}>", frame.path))),
            None => Ok(self.fields),
        }
    }
}

/// Joins an element's character data, trimming XML whitespace from the outer non-literal pieces
/// only, so CDATA content is kept byte for byte (and U+3000 and friends are kept everywhere).
fn join_pieces(mut pieces: Vec<(String, bool)>) -> String {
    for (text, literal) in pieces.iter_mut() {
        if *literal {
            break;
        }
        *text = text.trim_start_matches(is_xml_space).to_owned();
        if !text.is_empty() {
            break;
        }
    }
    for (text, literal) in pieces.iter_mut().rev() {
        if *literal {
            break;
        }
        *text = text.trim_end_matches(is_xml_space).to_owned();
        if !text.is_empty() {
            break;
        }
    }
    pieces.into_iter().map(|(text, _)| text).collect()
}

/// Resolves `&#…;` and the five predefined entities; no DTD is allowed, so nothing else exists.
fn resolve_reference(reference: &BytesRef<'_>) -> Result<String, MessageError> {
    if let Ok(Some(c)) = reference.resolve_char_ref() {
        return Ok(c.to_string());
    }
    resolve_predefined_entity(reference)
        .map(str::to_owned)
        .ok_or_else(|| malformed(format!("undefined or invalid reference &{};", &**reference)))
}

/// Reads a WeChat XML document into [`Fields`].
///
/// Rejects a DTD or `<!ENTITY` anywhere (→ [`MessageError::DoctypeForbidden`], §2.5: XXE and
/// billion laughs); a root other than `<xml>`, unbalanced tags, undefined entities, text,
/// elements or garbage outside the root, or an empty document (→ `Malformed`); nesting deeper
/// than 8 (→ `TooDeep`). Text is unescaped; CDATA is literal; attributes, comments and
/// processing instructions are ignored.
pub fn parse_fields(xml: &str) -> Result<Fields, MessageError> {
    let mut reader = Reader::from_str(xml);
    let mut doc = Doc::default();
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(err) => {
                let pos = usize::try_from(reader.error_position()).unwrap_or(usize::MAX);
                // quick-xml reports a stray `<!ENTITY` only as unknown `<!` markup.
                if xml.get(pos..).is_some_and(|rest| rest.starts_with("<!ENTITY")) {
                    return Err(MessageError::DoctypeForbidden);
                }
                return Err(malformed(format!("{err} at byte {pos}")));
            }
        };
        match event {
            XmlEvent::DocType(_) => return Err(MessageError::DoctypeForbidden),
            XmlEvent::Start(tag) => doc.open(&tag, false)?,
            XmlEvent::Empty(tag) => doc.open(&tag, true)?,
            XmlEvent::End(_) => doc.close()?,
            XmlEvent::Text(text) => doc.text(text.xml10_content().into_owned(), false)?,
            XmlEvent::CData(cdata) => doc.text(cdata.xml10_content().into_owned(), true)?,
            XmlEvent::GeneralRef(reference) => doc.text(resolve_reference(&reference)?, true)?,
            XmlEvent::Decl(_) if doc.root_seen => return Err(malformed("XML declaration inside the document")),
            XmlEvent::Decl(_) | XmlEvent::Comment(_) | XmlEvent::PI(_) => {}
            XmlEvent::Eof => return doc.finish(),
        }
    }
}
