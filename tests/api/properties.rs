//! Property tests (issue 8, "Hardening"): the edges that take bytes from outside never panic,
//! the crypto round-trips, and every platform body fits its limit.
//!
//! Case counts follow proptest's default (256), overridable with `PROPTEST_CASES`. Failures are
//! not persisted to a regressions file (the tree stays clean); a failing case is printed instead.
//!
//! The body-size properties run the builder on a separate thread with a timeout: a builder that
//! never returns makes the case fail instead of hanging the test binary. Such a thread cannot be
//! stopped, so those properties do not shrink (each shrink step would leave one more spinning
//! thread); their failure message describes the input by its field sizes instead.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wechat_bridge::relay::message::{EventInfo, FileInfo, InboundMessage, Link, Location, Media};
use wechat_bridge::vonage::event::{MAX_BODY_BYTES, MESSAGE_EVENT_TYPE, inbound_body, inbound_event};
use wechat_bridge::vonage::webhook::{MAX_AGE_SECS, SignatureError, verify_signature};
use wechat_bridge::wechat::crypto::{CryptoError, MessageCrypto};
use wechat_bridge::wechat::message::{self, Body, Event, Push};
use wechat_bridge::wechat::xml;

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// proptest's defaults (so `PROPTEST_CASES` applies), without a regressions file.
fn config() -> ProptestConfig {
    ProptestConfig { failure_persistence: None, ..ProptestConfig::default() }
}

/// Runs `f`, turning a panic into a failed case that names `what`.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| TestCaseError::fail(format!("{what} panicked: {}", panic_text(&*panic))))
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default()
}

/// `s` cut to at most `max` bytes on a char boundary.
fn truncate(mut s: String, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

/// Characters that stress JSON and XML: control characters (escaped to 6 bytes in JSON), quotes
/// and backslashes, markup, CJK (3 bytes), emoji (4 bytes, surrogate pairs elsewhere), and any.
fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::char::range('a', 'z'),
        2 => prop::char::range('\u{0}', '\u{1f}'),
        1 => prop::sample::select(vec!['"', '\\', '<', '>', '&', ']', '\u{7f}', '\u{2028}', '\u{feff}', '\u{3000}']),
        2 => prop::char::range('\u{4e00}', '\u{9fa5}'),
        2 => prop::char::range('\u{1f600}', '\u{1f64f}'),
        1 => any::<char>(),
    ]
}

/// A string of about `len` bytes: a short random pattern repeated (fast even for 10 KB).
fn repeated(len: impl Strategy<Value = usize>) -> impl Strategy<Value = String> {
    (vec(nasty_char(), 1..12), len).prop_map(|(pattern, len)| {
        let pattern: String = pattern.into_iter().collect();
        truncate(pattern.repeat(len / pattern.len() + 1), len)
    })
}

/// Mostly short strings, sometimes a few KB, sometimes up to 10 KB.
fn sized_string() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => repeated(0..40usize),
        2 => repeated(0..1200usize),
        1 => repeated(2000..10_240usize),
    ]
}

// ---------------------------------------------------------------------------------------------
// 1. The WeChat XML parser
// ---------------------------------------------------------------------------------------------

/// Real pushes: the official samples of `wechat-api.md` §2.3/§2.4 (as in message.rs's tests) and
/// the shapes the API tests send, plaintext and encrypted.
const PUSHES: &[&str] = &[
    "<xml>\n  <ToUserName><![CDATA[toUser]]></ToUserName>\n  <FromUserName><![CDATA[fromUser]]></FromUserName>\n  <CreateTime>1348831860</CreateTime>\n  <MsgType><![CDATA[text]]></MsgType>\n  <Content><![CDATA[this is a test]]></Content>\n  <MsgId>1234567890123456</MsgId>\n  <MsgDataId>xxxx</MsgDataId>\n  <Idx>xxxx</Idx>\n</xml>",
    "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[this is a url]]></PicUrl><MediaId><![CDATA[media_id]]></MediaId><MsgId>1234567890123456</MsgId></xml>",
    "<xml> <ToUserName><![CDATA[toUser]]></ToUserName> <FromUserName><![CDATA[fromUser]]></FromUserName> <CreateTime>1357290913</CreateTime> <MsgType><![CDATA[voice]]></MsgType> <MediaId><![CDATA[media_id]]></MediaId> <Format><![CDATA[Format]]></Format> <Recognition><![CDATA[腾讯微信团队]]></Recognition> <MsgId>1234567890123456</MsgId> </xml>",
    "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName><CreateTime>1357290913</CreateTime><MsgType><![CDATA[video]]></MsgType><MediaId><![CDATA[media_id]]></MediaId><ThumbMediaId><![CDATA[thumb_media_id]]></ThumbMediaId><MsgId>1234567890123456</MsgId></xml>",
    "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName><CreateTime>1351776360</CreateTime><MsgType><![CDATA[location]]></MsgType><Location_X>23.134521</Location_X><Location_Y>113.358803</Location_Y><Scale>20</Scale><Label><![CDATA[位置信息]]></Label><MsgId>1234567890123456</MsgId></xml>",
    "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName><CreateTime>1351776360</CreateTime><MsgType><![CDATA[link]]></MsgType><Title><![CDATA[公众平台官网链接]]></Title><Description><![CDATA[公众平台官网链接]]></Description><Url><![CDATA[url]]></Url><MsgId>1234567890123456</MsgId></xml>",
    "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName><CreateTime>1357290913</CreateTime><MsgType><![CDATA[file]]></MsgType><Title><![CDATA[report.pdf]]></Title><Description><![CDATA[Q3 report]]></Description><FileKey><![CDATA[fk_123]]></FileKey><FileMd5><![CDATA[5a6fa8d8bd0a2b0b8c1e3c1d2f3a4b5c]]></FileMd5><FileTotalLen>102400</FileTotalLen><MsgId>1234567890123456</MsgId></xml>",
    "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[FromUser]]></FromUserName><CreateTime>123456789</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_123123]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket></xml>",
    "<xml>\n  <ToUserName><![CDATA[toUser]]></ToUserName>\n  <FromUserName><![CDATA[fromUser]]></FromUserName>\n  <CreateTime>123456789</CreateTime>\n  <MsgType><![CDATA[event]]></MsgType>\n  <Event><![CDATA[LOCATION]]></Event>\n  <Latitude>23.137466</Latitude>\n  <Longitude>113.352425</Longitude>\n  <Precision>119.385040</Precision>\n</xml>",
    "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[FromUser]]></FromUserName><CreateTime>123456789</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[VIEW]]></Event><EventKey><![CDATA[www.qq.com]]></EventKey><MenuId>MENUID</MenuId></xml>",
    "<xml><ToUserName><![CDATA[gh_e136c6e50636]]></ToUserName>\n<FromUserName><![CDATA[oMgHVjngRipVsoxg6TuX3vz6glDg]]></FromUserName>\n<CreateTime>1408090606</CreateTime>\n<MsgType><![CDATA[event]]></MsgType>\n<Event><![CDATA[scancode_waitmsg]]></Event>\n<EventKey><![CDATA[6]]></EventKey>\n<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>\n<ScanResult><![CDATA[2]]></ScanResult>\n</ScanCodeInfo>\n</xml>",
    "<xml><ToUserName>t</ToUserName><FromUserName>f</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>pic_weixin</Event><EventKey>k</EventKey><SendPicsInfo><Count>2</Count><PicList><item><PicMd5Sum><![CDATA[aaa]]></PicMd5Sum></item><item><PicMd5Sum><![CDATA[bbb]]></PicMd5Sum></item></PicList></SendPicsInfo></xml>",
    "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName><CreateTime>1482048670</CreateTime><MsgType><![CDATA[miniprogrampage]]></MsgType><MsgId>1234567890123456</MsgId><Title><![CDATA[Title]]></Title><AppId><![CDATA[AppId]]></AppId><PagePath><![CDATA[PagePath]]></PagePath></xml>",
    "<xml><ToUserName><![CDATA[gh_account]]></ToUserName><Encrypt><![CDATA[rTNFcsut4LfGuAFKEUVVpwcaCOTJzOd9twZdIW910jb3k+iicx2uvhttIZ3Qg9Qg==]]></Encrypt></xml>",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><xml><ToUserName>t</ToUserName><FromUserName>f</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>a &lt;b&gt; &amp; &#20320;&#x597D;</Content><MsgId>1</MsgId><Encrypt>AAAA</Encrypt></xml>",
];

/// Fragments that steer a mutation towards the parser's edge cases.
const XML_PIECES: &[&str] = &[
    "<",
    ">",
    "</",
    "/>",
    "&",
    "&amp;",
    "&lt;",
    "&#0;",
    "&#x110000;",
    "&#xD800;",
    "&#99999999999;",
    "&unknown;",
    "]]>",
    "<![CDATA[",
    "<!DOCTYPE x>",
    "<!ENTITY e \"x\">",
    "<?xml version=\"1.0\"?>",
    "<!-- c -->",
    "<?pi x?>",
    "\"",
    "'",
    "=",
    "<xml>",
    "</xml>",
    "<a>",
    "</a>",
    "<a b=\"1\" b=\"2\">",
    "<a b='&q;'>",
    "\u{feff}",
    "\0",
    "\r\n",
    " ",
    "<é>",
    "<1>",
    "<MsgType>event</MsgType>",
    "<Event>LOCATION</Event>",
    "<Latitude>NaN</Latitude>",
    "<CreateTime>99999999999999999999</CreateTime>",
];

/// One edit of a document: insert, delete or replace at a random position.
#[derive(Debug, Clone)]
enum Edit {
    Insert(Index, String),
    Delete(Index, usize),
    Replace(Index, usize, String),
}

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(XML_PIECES).prop_map(str::to_owned),
        1 => nasty_char().prop_map(String::from),
        1 => "\\PC{1,6}",
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), piece()).prop_map(|(at, s)| Edit::Insert(at, s)),
        (any::<Index>(), 1..12usize).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<Index>(), 1..6usize, piece()).prop_map(|(at, n, s)| Edit::Replace(at, n, s)),
    ]
}

/// The largest char boundary of `s` at or before `at`.
fn floor_boundary(s: &str, mut at: usize) -> usize {
    at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(doc: &str, edits: &[Edit]) -> String {
    let mut doc = doc.to_owned();
    for edit in edits {
        let (at, len, insert) = match edit {
            Edit::Insert(at, s) => (at, 0, s.as_str()),
            Edit::Delete(at, n) => (at, *n, ""),
            Edit::Replace(at, n, s) => (at, *n, s.as_str()),
        };
        let start = floor_boundary(&doc, at.index(doc.len() + 1));
        let end = floor_boundary(&doc, start + len);
        doc.replace_range(start..end, insert);
    }
    doc
}

/// A push built from a real sample with 1 to 8 edits.
fn mutated_push() -> impl Strategy<Value = String> {
    (prop::sample::select(PUSHES), vec(edit(), 1..8)).prop_map(|(doc, edits)| apply(doc, &edits))
}

/// Element names: WeChat's own (so `parse` reaches every branch), plausible ones, and invalid ones.
fn element_name() -> impl Strategy<Value = String> {
    const NAMES: &[&str] = &[
        "ToUserName",
        "FromUserName",
        "CreateTime",
        "MsgType",
        "Content",
        "MsgId",
        "PicUrl",
        "MediaId",
        "Format",
        "Recognition",
        "MediaId16K",
        "ThumbMediaId",
        "Location_X",
        "Location_Y",
        "Scale",
        "Label",
        "Title",
        "Description",
        "Url",
        "FileKey",
        "FileMd5",
        "FileTotalLen",
        "Event",
        "EventKey",
        "Ticket",
        "Latitude",
        "Longitude",
        "Precision",
        "MenuId",
        "Encrypt",
        "bizmsgmenuid",
        "item",
        "xml",
    ];
    prop_oneof![
        4 => prop::sample::select(NAMES).prop_map(str::to_owned),
        1 => "[A-Za-z_:][A-Za-z0-9_.:-]{0,8}",
        1 => "\\PC{1,4}",
    ]
}

/// Element text: WeChat's values, numbers good and bad, escaped or raw text, CDATA, references.
fn element_text() -> impl Strategy<Value = String> {
    const VALUES: &[&str] = &[
        "text",
        "image",
        "voice",
        "video",
        "shortvideo",
        "location",
        "link",
        "file",
        "event",
        "miniprogrampage",
        "TEXT",
        "subscribe",
        "unsubscribe",
        "SCAN",
        "LOCATION",
        "CLICK",
        "VIEW",
        "view",
        "scancode_push",
        "TEMPLATESENDJOBFINISH",
        "0",
        "-1",
        "1.5",
        "NaN",
        "inf",
        "-inf",
        "1e400",
        "-0",
        "99999999999999999999999",
        "18446744073709551616",
        "0x10",
        " 12 ",
        "",
    ];
    prop_oneof![
        3 => prop::sample::select(VALUES).prop_map(str::to_owned),
        1 => any::<f64>().prop_map(|f| f.to_string()),
        1 => any::<i64>().prop_map(|i| i.to_string()),
        2 => "\\PC{0,16}".prop_map(|s| quick_xml::escape::escape(s.as_str()).into_owned()),
        1 => "\\PC{0,16}",
        2 => "\\PC{0,16}".prop_map(|s| format!("<![CDATA[{s}]]>")),
        1 => (any::<u32>(), any::<bool>()).prop_map(|(n, hex)| if hex { format!("&#x{n:x};") } else { format!("&#{n};") }),
    ]
}

/// An element with text, children (nested up to 4 levels) or nothing.
fn element() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        4 => (element_name(), element_text()).prop_map(|(n, t)| format!("<{n}>{t}</{n}>")),
        1 => element_name().prop_map(|n| format!("<{n}/>")),
        1 => (element_name(), "[a-z]{1,4}", "\\PC{0,8}").prop_map(|(n, a, v)| format!("<{n} {a}=\"{v}\">x</{n}>")),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        (element_name(), vec(inner, 0..4), "[ \n]{0,2}").prop_map(|(n, kids, ws)| format!("<{n}>{ws}{}</{n}>", kids.concat()))
    })
}

/// An XML-shaped document: an optional prolog, `<xml>` with a header and random elements,
/// sometimes something after the root.
fn xml_document() -> impl Strategy<Value = String> {
    let prolog = prop::sample::select(vec!["", "", "<?xml version=\"1.0\"?>", "\u{feff}", "<!-- c -->", "<!DOCTYPE xml>", " \n"]);
    let tail = prop::sample::select(vec!["", "", "", "\n", "<xml></xml>", "junk", "<!-- c -->"]);
    let header = (element_text(), element_text(), element_text()).prop_map(|(msg_type, time, event)| {
        format!("<ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>{time}</CreateTime><MsgType>{msg_type}</MsgType><Event>{event}</Event>")
    });
    (prolog, prop::option::of(header), vec(element(), 0..10), tail).prop_map(|(prolog, header, elements, tail)| {
        format!("{prolog}<xml>{}{}</xml>{tail}", header.unwrap_or_default(), elements.concat())
    })
}

/// Runs every public reader on `input`; none may panic. A parsed push must also survive what
/// the relay does with it: JSON storage and conversion to an [`InboundMessage`].
fn parse_all(input: &str) -> Result<(), TestCaseError> {
    let _ = no_panic("xml::parse_fields", || xml::parse_fields(input))?;
    let _ = no_panic("message::parse_encrypted_envelope", || message::parse_encrypted_envelope(input))?;
    if let Ok(push) = no_panic("message::parse", || message::parse(input))? {
        let json = no_panic("serializing a parsed Push", || serde_json::to_string(&push))?;
        prop_assert!(json.is_ok(), "a parsed push does not serialize: {json:?}");
        no_panic("wechat::inbound::to_inbound", || wechat_bridge::wechat::inbound::to_inbound(&push))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn xml_readers_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..512)) {
        parse_all(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn xml_readers_never_panic_on_arbitrary_strings(s in "\\PC{0,256}|.{0,64}") {
        parse_all(&s)?;
    }

    #[test]
    fn xml_readers_never_panic_on_generated_documents(doc in xml_document()) {
        parse_all(&doc)?;
    }

    #[test]
    fn xml_readers_never_panic_on_mutated_real_pushes(doc in mutated_push()) {
        parse_all(&doc)?;
    }

    /// The depth limit holds at any depth, and a deep document is refused, not overflowed.
    #[test]
    fn deep_nesting_is_refused_not_overflowed(depth in 1..5000usize) {
        let doc = format!("<xml>{}{}</xml>", "<a>".repeat(depth), "</a>".repeat(depth));
        let parsed = no_panic("xml::parse_fields", || xml::parse_fields(&doc))?;
        prop_assert_eq!(parsed.is_ok(), depth < xml::MAX_DEPTH, "depth {}", depth);
    }
}

/// Optional text that `parse` keeps as `Some`: non-empty (an empty element reads as absent).
fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(cdata_text().prop_filter("non-empty", |s| !s.is_empty()))
}

/// Text that CDATA carries unchanged: XML 1.0 normalises `\r\n` and `\r` to `\n` at parse time
/// (§2.11 of the XML spec), so a carriage return cannot round-trip and is left out.
fn cdata_text() -> impl Strategy<Value = String> {
    vec(nasty_char().prop_filter("no CR", |c| *c != '\r'), 0..40).prop_map(|c| c.into_iter().collect())
}

fn msg_id() -> impl Strategy<Value = String> {
    any::<u64>().prop_map(|n| n.to_string())
}

/// `f` as WeChat would send a coordinate: within ±180, 6 decimals.
fn wechat_coordinate(f: f64) -> f64 {
    format!("{:.6}", f.rem_euclid(360.0) - 180.0).parse().unwrap()
}

fn wechat_coordinates(mut push: Push) -> Push {
    let round = |f: &mut f64| *f = wechat_coordinate(*f);
    match &mut push.body {
        Body::Location { latitude, longitude, scale, .. }
        | Body::Event(Event::Location { latitude, longitude, precision: scale }) => {
            round(latitude);
            round(longitude);
            scale.as_mut().map(round);
        }
        _ => {}
    }
    push
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |f| f.is_finite())
}

/// Pushes of the typed shapes with arbitrary text in every string field.
fn push() -> impl Strategy<Value = Push> {
    let body = prop_oneof![
        (cdata_text(), msg_id(), opt_text()).prop_map(|(content, msg_id, biz_msg_menu_id)| Body::Text {
            content,
            msg_id,
            biz_msg_menu_id
        }),
        (cdata_text(), cdata_text(), msg_id()).prop_map(|(pic_url, media_id, msg_id)| Body::Image { pic_url, media_id, msg_id }),
        (cdata_text(), cdata_text(), opt_text(), opt_text(), msg_id()).prop_map(
            |(media_id, format, recognition, media_id_16k, msg_id)| {
                Body::Voice { media_id, format, recognition, media_id_16k, msg_id }
            }
        ),
        (cdata_text(), cdata_text(), msg_id()).prop_map(|(media_id, thumb_media_id, msg_id)| Body::Video {
            media_id,
            thumb_media_id,
            msg_id
        }),
        (finite(), finite(), prop::option::of(finite()), opt_text(), msg_id())
            .prop_map(|(latitude, longitude, scale, label, msg_id)| Body::Location { latitude, longitude, scale, label, msg_id }),
        (cdata_text(), cdata_text(), cdata_text(), msg_id()).prop_map(|(title, description, url, msg_id)| Body::Link {
            title,
            description,
            url,
            msg_id
        }),
        (cdata_text(), cdata_text(), cdata_text(), cdata_text(), prop::option::of(any::<u64>()), msg_id()).prop_map(
            |(title, description, file_key, file_md5, file_total_len, msg_id)| Body::File {
                title,
                description,
                file_key,
                file_md5,
                file_total_len,
                msg_id
            }
        ),
        (opt_text(), opt_text()).prop_map(|(event_key, ticket)| Body::Event(Event::Subscribe { event_key, ticket })),
        (cdata_text(), opt_text()).prop_map(|(event_key, ticket)| Body::Event(Event::Scan { event_key, ticket })),
        (finite(), finite(), prop::option::of(finite()))
            .prop_map(|(latitude, longitude, precision)| Body::Event(Event::Location { latitude, longitude, precision })),
        cdata_text().prop_map(|event_key| Body::Event(Event::Click { event_key })),
        (cdata_text(), prop::option::of("[A-Za-z0-9_]{1,12}"))
            .prop_map(|(url, menu_id)| Body::Event(Event::View { url, menu_id })),
        Just(Body::Event(Event::Unsubscribe)),
    ];
    (cdata_text(), cdata_text(), any::<i64>(), body).prop_map(|(to_user_name, from_user_name, create_time, body)| Push {
        to_user_name,
        from_user_name,
        create_time,
        body,
    })
}

proptest! {
    #![proptest_config(config())]

    /// What the WeChat simulator writes, the parser reads back exactly (`to_xml` promises it),
    /// whatever the text: markup, `]]>`, control characters, emoji.
    #[test]
    fn to_xml_then_parse_round_trips(push in push()) {
        let xml = message::to_xml(&push);
        let parsed = no_panic("message::parse", || message::parse(&xml))?;
        prop_assert_eq!(parsed.as_ref().ok(), Some(&push), "{:?}\nfrom:\n{}", parsed.as_ref().err(), xml);
    }

    /// The relay stores a parsed push as JSON; reading it back gives the same push. Coordinates
    /// are WeChat's (at most 6 decimals, within ±180): serde_json without its `float_roundtrip`
    /// feature can read an arbitrary f64 back one ULP off (e.g. -2.6844164628870476e48).
    #[test]
    fn a_push_round_trips_through_json(push in push().prop_map(wechat_coordinates)) {
        let json = serde_json::to_string(&push).unwrap();
        let back: Push = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, push, "{}", json);
    }

    /// The safe-mode envelope writer and reader agree on any account and ciphertext text.
    #[test]
    fn encrypted_envelope_round_trips(to in cdata_text(), encrypt in "[A-Za-z0-9+/=]{0,200}") {
        let envelope = message::parse_encrypted_envelope(&message::encrypted_envelope_xml(&to, &encrypt)).unwrap();
        prop_assert_eq!(envelope.to_user_name.unwrap_or_default(), to);
        prop_assert_eq!(envelope.encrypt.unwrap_or_default(), encrypt);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. AES decrypt (safe mode)
// ---------------------------------------------------------------------------------------------

const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APP_ID: &str = "wxb11529c136998cb6";

fn crypto() -> MessageCrypto {
    MessageCrypto::new(AES_KEY, APP_ID).unwrap()
}

/// Decrypts with both entry points; neither may panic.
fn decrypt_all(c: &MessageCrypto, input: &str) -> Result<Result<String, CryptoError>, TestCaseError> {
    let _ = no_panic("MessageCrypto::decrypt_raw", || c.decrypt_raw(input))?;
    no_panic("MessageCrypto::decrypt", || c.decrypt(input))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decrypt_never_panics_on_arbitrary_text(s in "\\PC{0,200}|[A-Za-z0-9+/=]{0,200}") {
        let _ = decrypt_all(&crypto(), &s)?;
    }

    #[test]
    fn decrypt_never_panics_on_base64_of_arbitrary_bytes(bytes in vec(any::<u8>(), 0..600)) {
        let _ = decrypt_all(&crypto(), &STANDARD.encode(&bytes))?;
    }

    /// Whole AES blocks of random bytes pass the length check and reach the padding and layout
    /// checks: random pad byte, random msg_len, random UTF-8.
    #[test]
    fn decrypt_never_panics_on_random_blocks(bytes in (1..40usize).prop_flat_map(|blocks| vec(any::<u8>(), blocks * 16))) {
        let _ = decrypt_all(&crypto(), &STANDARD.encode(&bytes))?;
    }

    /// A real ciphertext with a byte flipped, or cut to fewer blocks: never a panic, and never
    /// the original message (CBC is unauthenticated, but every plaintext byte that matters moves).
    #[test]
    fn tampered_ciphertext_never_decrypts_to_the_original(
        msg in "\\PC{0,300}", at in any::<Index>(), flip in 1..=255u8, keep in any::<Index>(), cut in any::<bool>(),
    ) {
        let c = crypto();
        let mut raw = STANDARD.decode(c.encrypt(&msg)).unwrap();
        if cut {
            raw.truncate(keep.index(raw.len() / 16) * 16);
        } else {
            let i = at.index(raw.len());
            raw[i] ^= flip;
        }
        let out = decrypt_all(&c, &STANDARD.encode(&raw))?;
        prop_assert!(out.as_deref().ok() != Some(msg.as_str()), "tampered ciphertext decrypted to the original");
    }

    /// encrypt → decrypt gives the message back for any UTF-8 text, any receive id (appid or
    /// corpid) and any valid key; the layout follows §3.3 (pad 1..=32 to a multiple of 32).
    #[test]
    fn encrypt_then_decrypt_round_trips(
        msg in prop_oneof![3 => "\\PC{0,200}", 1 => any::<String>(), 1 => repeated(0..5000usize)],
        app_id in prop_oneof!["wx[0-9a-f]{16}", any::<String>()],
        key in "[A-Za-z0-9]{43}",
    ) {
        let c = MessageCrypto::new(&key, &app_id).unwrap();
        let encrypted = no_panic("MessageCrypto::encrypt", || c.encrypt(&msg))?;
        let raw = c.decrypt_raw(&encrypted).unwrap();
        prop_assert_eq!(&raw.message, &msg);
        prop_assert_eq!(&raw.receive_id, &app_id);
        prop_assert!((1..=32).contains(&raw.pad));
        prop_assert_eq!((20 + msg.len() + app_id.len() + usize::from(raw.pad)) % 32, 0);
        prop_assert_eq!(STANDARD.decode(&encrypted).unwrap().len(), 20 + msg.len() + app_id.len() + usize::from(raw.pad));
        prop_assert_eq!(c.decrypt(&encrypted).unwrap(), msg);
    }

    /// Another account's ciphertext is refused by its receive id (§3.6.4), not decrypted.
    #[test]
    fn another_app_id_is_refused(msg in "\\PC{0,100}", ours in any::<String>(), theirs in any::<String>()) {
        prop_assume!(ours != theirs);
        let encrypted = MessageCrypto::new(AES_KEY, &theirs).unwrap().encrypt(&msg);
        let out = MessageCrypto::new(AES_KEY, &ours).unwrap().decrypt(&encrypted);
        prop_assert!(matches!(out, Err(CryptoError::AppIdMismatch { .. })), "{:?}", out);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Vonage signed-webhook verifier
// ---------------------------------------------------------------------------------------------

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// JWT-shaped tokens that get past the base64 split: real HS256 headers and other `alg`s,
/// JSON claims with odd `iat`/`payload_hash` values, random signatures.
fn jwt_shaped() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        Just(r#"{"alg":"HS256","typ":"JWT"}"#.to_owned()),
        prop::sample::select(vec!["none", "HS384", "RS256", "ES256", "EdDSA", "", "hs256"])
            .prop_map(|a| format!(r#"{{"alg":"{a}"}}"#)),
        "\\PC{0,40}",
    ];
    let iat = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        Just("null".to_owned()),
        Just("\"1700000000\"".to_owned()),
        Just("1e400".to_owned()),
    ];
    let claims = prop_oneof![
        (iat, "[0-9a-fA-F]{0,70}").prop_map(|(iat, h)| format!(r#"{{"iat":{iat},"payload_hash":"{h}"}}"#)),
        "\\PC{0,60}",
    ];
    (header, claims, vec(any::<u8>(), 0..48), any::<bool>()).prop_map(|(h, c, sig, lower)| {
        let token = format!("{}.{}.{}", b64url(h.as_bytes()), b64url(c.as_bytes()), b64url(&sig));
        if lower { format!("bearer {token}") } else { format!("Bearer {token}") }
    })
}

fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn payload_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn verify_never_panics_on_arbitrary_input(
        authorization in prop::option::of(prop_oneof!["\\PC{0,120}", "Bearer \\PC{0,120}", "Bearer [A-Za-z0-9_.=-]{0,160}"]),
        body in vec(any::<u8>(), 0..256),
        secret in "\\PC{0,40}",
        now in any::<u64>(),
    ) {
        let _ = no_panic("verify_signature", || verify_signature(authorization.as_deref(), &body, &secret, now))?;
    }

    #[test]
    fn verify_never_panics_on_jwt_shaped_tokens(
        authorization in jwt_shaped(), body in vec(any::<u8>(), 0..64), secret in "\\PC{0,20}", now in any::<u64>(),
    ) {
        let out = no_panic("verify_signature", || verify_signature(Some(&authorization), &body, &secret, now))?;
        // A random signature never verifies.
        prop_assert!(out.is_err(), "a forged token was accepted: {}", authorization);
    }

    /// A token signed with the secret, fresh, over the exact body verifies, for any body and
    /// secret; the same token fails for another body, another secret, or outside the window.
    #[test]
    fn a_correctly_signed_token_verifies_for_any_body(
        body in vec(any::<u8>(), 0..2048),
        other in vec(any::<u8>(), 0..64),
        secret in "\\PC{1,64}",
        now in (MAX_AGE_SECS + 1)..(u64::MAX / 2),
        skew in -(MAX_AGE_SECS as i64)..=(MAX_AGE_SECS as i64),
        upper in any::<bool>(),
    ) {
        let iat = now.checked_add_signed(skew).unwrap();
        let hash = if upper { payload_hash(&body).to_ascii_uppercase() } else { payload_hash(&body) };
        let token = sign(&json!({"iat": iat, "jti": "j", "iss": "VONAGE", "payload_hash": hash, "application_id": "a"}), &secret);
        let auth = format!("Bearer {token}");
        let out = no_panic("verify_signature", || verify_signature(Some(&auth), &body, &secret, now))?;
        prop_assert_eq!(out, Ok(()));
        if other != body {
            prop_assert_eq!(verify_signature(Some(&auth), &other, &secret, now), Err(SignatureError::PayloadHash));
        }
        let wrong = format!("{secret}x");
        prop_assert!(matches!(verify_signature(Some(&auth), &body, &wrong, now), Err(SignatureError::Invalid(_))));
        let late = iat + MAX_AGE_SECS + 1;
        prop_assert_eq!(verify_signature(Some(&auth), &body, &secret, late), Err(SignatureError::Stale));
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Every Vonage event body fits 4,096 bytes
// ---------------------------------------------------------------------------------------------

/// How long one body may take to build. Microseconds are normal; this only catches a builder
/// that does not return.
const BUILD_TIMEOUT: Duration = Duration::from_secs(2);
const BRIDGE_MESSAGE_ID: &str = "019a1b2c-3d4e-7f60-8a9b-0c1d2e3f4a5b";
const MEMBER_ID: &str = "MEM-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/// No shrinking: a case that times out leaves its thread spinning, and each shrink step could
/// leave another. The failure message describes the input instead.
fn body_config() -> ProptestConfig {
    ProptestConfig { max_shrink_iters: 0, ..config() }
}

fn media() -> impl Strategy<Value = Media> {
    let s = || prop::option::of(sized_string());
    (s(), s(), s(), s(), s(), s(), s()).prop_map(|(media_id, url, pic_url, format, thumb_media_id, media_id_16k, recognition)| {
        Media { media_id, url, pic_url, format, thumb_media_id, media_id_16k, recognition }
    })
}

fn location() -> impl Strategy<Value = Location> {
    (finite(), finite(), prop::option::of(finite()), prop::option::of(finite()), prop::option::of(sized_string()))
        .prop_map(|(latitude, longitude, scale, precision, label)| Location { latitude, longitude, scale, precision, label })
}

fn link() -> impl Strategy<Value = Link> {
    (sized_string(), sized_string(), sized_string()).prop_map(|(title, description, url)| Link { title, description, url })
}

fn file() -> impl Strategy<Value = FileInfo> {
    let s = || prop::option::of(sized_string());
    (sized_string(), s(), s(), s(), prop::option::of(any::<u64>()))
        .prop_map(|(title, description, file_key, file_md5, size)| FileInfo { title, description, file_key, file_md5, size })
}

fn event_info() -> impl Strategy<Value = EventInfo> {
    let s = || prop::option::of(sized_string());
    let fields = prop_oneof![
        btree_map("[A-Za-z_.]{1,24}", repeated(0..200usize), 0..8),
        btree_map("[A-Za-z_.]{1,24}", repeated(0..400usize), 20..80),
    ];
    (repeated(1..30usize), s(), s(), s(), fields).prop_map(|(name, key, ticket, menu_id, fields)| EventInfo {
        name,
        key,
        ticket,
        menu_id,
        fields,
    })
}

/// Content: a WeChat text (≤ 2,048 bytes) of any characters, or longer.
fn content() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => repeated(0..64usize),
        3 => repeated(0..=2048usize),
        1 => repeated(2049..8000usize),
    ]
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "o[A-Za-z0-9_-]{27}",
        1 => repeated(0..2000usize),
        1 => repeated(4000..10_240usize),
    ]
}

/// Any inbound message: every type, with any mix of extras, each field short or huge.
fn inbound_message() -> impl Strategy<Value = InboundMessage> {
    let msg_type = prop::sample::select(vec![
        "text",
        "image",
        "voice",
        "video",
        "shortvideo",
        "location",
        "link",
        "file",
        "event",
        "miniprogrampage",
    ]);
    let head = (id(), id(), msg_type, prop::option::of(msg_id()), any::<i64>(), content());
    let extras = (
        prop::option::of(media()),
        prop::option::of(location()),
        prop::option::of(link()),
        prop::option::of(file()),
        prop::option::of(event_info()),
    );
    (head, extras).prop_map(
        |((account, sender, msg_type, msg_id, create_time, content), (media, location, link, file, event))| InboundMessage {
            account,
            sender,
            msg_type: msg_type.to_owned(),
            msg_id,
            create_time,
            content,
            media,
            location,
            link,
            file,
            event,
        },
    )
}

fn json_len(value: &Value) -> usize {
    serde_json::to_vec(value).unwrap().len()
}

/// The body with nothing cut, as DESIGN.md "The event body" lays it out.
fn uncut_body(msg: &InboundMessage, with_extras: bool) -> Value {
    let mut body = json!({
        "to": msg.account, "from": msg.sender, "content": msg.content, "direction": "inbound",
        "msgtype": msg.msg_type, "create_time": msg.create_time, "bridge_message_id": BRIDGE_MESSAGE_ID,
    });
    if let Some(msg_id) = &msg.msg_id {
        body["msg_id"] = json!(msg_id);
    }
    if with_extras {
        let extras = [
            ("media", msg.media.as_ref().map(|v| json!(v))),
            ("location", msg.location.as_ref().map(|v| json!(v))),
            ("link", msg.link.as_ref().map(|v| json!(v))),
            ("file", msg.file.as_ref().map(|v| json!(v))),
            ("event", msg.event.as_ref().map(|v| json!(v))),
        ];
        for (key, value) in extras {
            if let Some(value) = value {
                body[key] = value;
            }
        }
    }
    body
}

/// The message by its field sizes (the fields themselves can be 10 KB).
fn describe(msg: &InboundMessage) -> String {
    let len = |s: &Option<String>| s.as_ref().map_or("-".to_owned(), |s| s.len().to_string());
    let mut out = format!(
        "msg_type={} account={}B sender={}B content={}B msg_id={} uncut core body={}B uncut full body={}B",
        msg.msg_type,
        msg.account.len(),
        msg.sender.len(),
        msg.content.len(),
        len(&msg.msg_id),
        json_len(&uncut_body(msg, false)),
        json_len(&uncut_body(msg, true)),
    );
    if let Some(l) = &msg.link {
        out += &format!(" link{{title={}B description={}B url={}B}}", l.title.len(), l.description.len(), l.url.len());
    }
    if let Some(m) = &msg.media {
        out += &format!(
            " media{{media_id={} url={} pic_url={} format={} thumb={} 16k={} recognition={}}}",
            len(&m.media_id),
            len(&m.url),
            len(&m.pic_url),
            len(&m.format),
            len(&m.thumb_media_id),
            len(&m.media_id_16k),
            len(&m.recognition)
        );
    }
    if let Some(l) = &msg.location {
        out += &format!(" location{{label={}}}", len(&l.label));
    }
    if let Some(f) = &msg.file {
        out += &format!(
            " file{{title={}B description={} key={} md5={}}}",
            f.title.len(),
            len(&f.description),
            len(&f.file_key),
            len(&f.file_md5)
        );
    }
    if let Some(e) = &msg.event {
        let fields: usize = e.fields.iter().map(|(k, v)| k.len() + v.len()).sum();
        out += &format!(
            " event{{name={}B key={} ticket={} menu_id={} fields={}x{}B}}",
            e.name.len(),
            len(&e.key),
            len(&e.ticket),
            len(&e.menu_id),
            e.fields.len(),
            fields
        );
    }
    out
}

/// `inbound_body` and `inbound_event` on a thread of their own: a builder that does not return
/// within [`BUILD_TIMEOUT`] fails the case instead of hanging the test binary.
fn build_guarded(msg: &InboundMessage) -> Result<(Value, Value), TestCaseError> {
    let (tx, rx) = mpsc::channel();
    let owned = msg.clone();
    thread::Builder::new()
        .name("inbound_body".into())
        .spawn(move || {
            let built = catch_unwind(AssertUnwindSafe(|| {
                (inbound_body(&owned, BRIDGE_MESSAGE_ID), inbound_event(&owned, MEMBER_ID, BRIDGE_MESSAGE_ID))
            }));
            let _ = tx.send(built.map_err(|panic| panic_text(&*panic)));
        })
        .expect("spawn a builder thread");
    match rx.recv_timeout(BUILD_TIMEOUT) {
        Ok(Ok(built)) => Ok(built),
        Ok(Err(panic)) => Err(TestCaseError::fail(format!("inbound_body panicked ({panic}) on {}", describe(msg)))),
        Err(_) => Err(TestCaseError::fail(format!(
            "inbound_body did not return within {BUILD_TIMEOUT:?} (infinite shrink loop?) on {}",
            describe(msg)
        ))),
    }
}

/// The body fits, the event wraps it, the fixed fields are right, and `content` is whole when
/// the message without extras fits (else a prefix of it marked with `…`); a message that fits
/// as it is goes out unchanged.
fn check_body(msg: &InboundMessage) -> Result<(), TestCaseError> {
    let (body, event) = build_guarded(msg)?;
    let size = json_len(&body);
    prop_assert!(size <= MAX_BODY_BYTES, "body is {} bytes (> {}) for {}", size, MAX_BODY_BYTES, describe(msg));
    prop_assert_eq!(&event["type"], MESSAGE_EVENT_TYPE);
    prop_assert_eq!(&event["from"], MEMBER_ID);
    prop_assert!(event["body"] == body, "inbound_event's body differs from inbound_body for {}", describe(msg));
    prop_assert_eq!(&body["direction"], "inbound");
    prop_assert_eq!(&body["msgtype"], msg.msg_type.as_str());
    prop_assert_eq!(&body["bridge_message_id"], BRIDGE_MESSAGE_ID);
    prop_assert_eq!(&body["create_time"], msg.create_time);
    let content = body["content"].as_str();
    prop_assert!(content.is_some(), "content dropped for {}", describe(msg));
    let content = content.unwrap_or_default();
    if json_len(&uncut_body(msg, false)) <= MAX_BODY_BYTES {
        prop_assert!(content == msg.content, "content cut although the message without extras fits: {}", describe(msg));
        prop_assert_eq!(&body["to"], msg.account.as_str());
        prop_assert_eq!(&body["from"], msg.sender.as_str());
    } else if content != msg.content {
        let prefix = content.strip_suffix('…');
        prop_assert!(prefix.is_some_and(|p| msg.content.starts_with(p)), "content is not a marked prefix: {}", describe(msg));
    }
    if json_len(&uncut_body(msg, true)) <= MAX_BODY_BYTES {
        prop_assert!(body == uncut_body(msg, true), "a body that fits was changed: {}", describe(msg));
    }
    Ok(())
}

fn with_link(msg: InboundMessage, link: Link) -> InboundMessage {
    InboundMessage { msg_type: "link".into(), content: format!("{} {}", link.title, link.url), link: Some(link), ..msg }
}

fn text_message() -> impl Strategy<Value = InboundMessage> {
    ("o[A-Za-z0-9_-]{27}", content(), msg_id()).prop_map(|(sender, content, msg_id)| InboundMessage {
        account: "gh_0123456789ab".into(),
        sender,
        msg_type: "text".into(),
        msg_id: Some(msg_id),
        create_time: 1_700_000_000,
        content,
        media: None,
        location: None,
        link: None,
        file: None,
        event: None,
    })
}

proptest! {
    #![proptest_config(body_config())]

    /// Any message, any type, any extras, any sizes.
    #[test]
    fn every_inbound_body_fits_and_keeps_content(msg in inbound_message()) {
        check_body(&msg)?;
    }

    /// A WeChat text of up to 2,048 bytes and beyond, escape-heavy or emoji: fits, and is kept
    /// whole whenever it can be.
    #[test]
    fn every_text_body_fits(msg in text_message()) {
        check_body(&msg)?;
    }

    /// A link push as `to_inbound` makes it (content = "{title} {url}") with a 4–8 KB URL.
    #[test]
    fn a_link_with_a_huge_url_fits(
        msg in text_message(), title in repeated(0..300usize), description in repeated(0..3000usize), url in repeated(4000..8000usize),
    ) {
        check_body(&with_link(msg, Link { title, description, url }))?;
    }

    /// A 4–10 KB FromUserName or ToUserName (ids come from the push; nothing bounds them).
    #[test]
    fn a_huge_sender_or_account_fits(mut msg in text_message(), huge in repeated(4000..=10_240usize), account in any::<bool>()) {
        if account { msg.account = huge } else { msg.sender = huge }
        check_body(&msg)?;
    }
}

/// A fixed control for the bound: an event with many generic fields (the builder's own test
/// shape, 50 fields of 200 bytes) fits.
#[test]
fn many_event_fields_fit() {
    let fields: BTreeMap<String, String> = (0..50).map(|i| (format!("F{i:02}"), "x".repeat(200))).collect();
    let msg = InboundMessage {
        account: "gh_account".into(),
        sender: "openid_1".into(),
        msg_type: "event".into(),
        msg_id: None,
        create_time: 1,
        content: "[event: weird]".into(),
        media: None,
        location: None,
        link: None,
        file: None,
        event: Some(EventInfo { name: "weird".into(), key: None, ticket: None, menu_id: None, fields }),
    };
    check_body(&msg).unwrap();
}

/// Found by the `event_body` fuzz target (fuzz/RESULTS.md): a ToUserName of 1,009 control
/// characters (6 bytes each once JSON-escaped) and an empty `content`. Nothing is left that
/// the builder knows how to cut, so it returns a 6,200-byte body instead of hanging.
#[test]
fn an_escaped_account_with_empty_content_fits() {
    let msg = InboundMessage {
        account: "\u{7}".repeat(1009),
        sender: String::new(),
        msg_type: "text".into(),
        msg_id: None,
        create_time: 0,
        content: String::new(),
        media: None,
        location: None,
        link: None,
        file: None,
        event: None,
    };
    check_body(&msg).unwrap();
}
