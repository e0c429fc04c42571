//! Downloads an agent's `media.url` (outbound image, voice, video) for upload to WeChat (§7.1),
//! safely: only http(s), only to addresses `fetch_policy` permits, with a size cap and timeouts,
//! and with errors that say whether trying again can help.
//!
//! The address check happens where it cannot be dodged:
//! - host names go through [`GuardedResolver`], which resolves and then drops non-permitted
//!   addresses, so the address checked is the address connected to (no DNS-rebinding gap between a
//!   check and the connect);
//! - IP-literal hosts never reach a resolver (hyper connects to them directly), so they are checked
//!   before the request and in the redirect policy;
//! - every redirect is checked again (scheme, literal address, allowlist), at most
//!   [`MAX_REDIRECTS`] of them, loops refused;
//! - no proxy from the environment is used, since the resolver would then only see the proxy.
//!
//! WeChat's own `video_url` from `media/get` does not come here: it is WeChat's server answering
//! an authenticated call, fetched by `WeChatClient` like the rest of its API.
//!
//! Agents' URLs may carry credentials (signed links): no error or log here holds the URL; a
//! reason names at most the host or the refused address.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::{Attempt, Policy};

use super::fetch_policy::FetchAllowlist;

/// More than any CDN needs; a chain longer than this is a loop or a trick.
pub const MAX_REDIRECTS: usize = 5;
/// A file server that does not accept the connection in this time is down (retry later).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole download, well within the job timeout (60 s) with room for the upload to WeChat.
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// Why an agent's media URL was not fetched. [`FetchError::is_retryable`] tells the outbox
/// whether another attempt can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("media.url is not a valid URL")]
    InvalidUrl,
    #[error("media.url must be http or https, not {0}")]
    Scheme(String),
    /// The address (after DNS, or of a redirect) is not public and not allowlisted.
    #[error(
        "media.url points at a non-public address ({0}); only public addresses are fetched \
         (BRIDGE_MEDIA_FETCH_ALLOWLIST allows more)"
    )]
    NonPublic(String),
    #[error("media.url redirected more than {MAX_REDIRECTS} times")]
    TooManyRedirects,
    #[error("media.url redirected in a loop")]
    RedirectLoop,
    #[error("media.url answered HTTP {0}")]
    Status(u16),
    #[error("media.url answered more than {0} bytes, larger than WeChat accepts")]
    TooLarge(usize),
    #[error("media.url timed out")]
    Timeout,
    /// Connect refused or reset, DNS failure: the file server may be back later.
    #[error("media.url could not be fetched: {0}")]
    Transport(String),
}

impl FetchError {
    /// 5xx, 408, 429, timeouts and connection errors may pass later; a refused or malformed URL,
    /// a redirect loop, another 4xx or an over-size file never will.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Status(status) => *status >= 500 || *status == 408 || *status == 429,
            FetchError::Timeout | FetchError::Transport(_) => true,
            FetchError::InvalidUrl
            | FetchError::Scheme(_)
            | FetchError::NonPublic(_)
            | FetchError::TooManyRedirects
            | FetchError::RedirectLoop
            | FetchError::TooLarge(_) => false,
        }
    }
}

/// Resolves a host name to IP addresses (injectable so tests can play DNS).
pub type Lookup = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> + Send + Sync>;

/// The system resolver, as `tokio::net::lookup_host` sees it.
fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect()) })
    })
}

/// A `reqwest` resolver that keeps only permitted addresses, and fails when none remain.
pub struct GuardedResolver {
    allowlist: Arc<FetchAllowlist>,
    lookup: Lookup,
}

impl GuardedResolver {
    /// The addresses of `host` the fetch may connect to: all of them for an allowlisted host name,
    /// else the public or allowlisted ones; [`FetchError::NonPublic`] when none remain.
    pub async fn permitted(&self, host: &str) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let addrs = (self.lookup)(host.to_string()).await?;
        if self.allowlist.allows_host(host) {
            return Ok(addrs);
        }
        let permitted: Vec<IpAddr> = addrs.iter().copied().filter(|ip| self.allowlist.permits(*ip)).collect();
        match (permitted.is_empty(), addrs.first()) {
            (false, _) => Ok(permitted),
            (true, Some(refused)) => Err(Box::new(FetchError::NonPublic(format!("{host} resolves to {refused}")))),
            (true, None) => Err(Box::new(io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}")))),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = GuardedResolver { allowlist: self.allowlist.clone(), lookup: self.lookup.clone() };
        Box::pin(async move {
            let ips = resolver.permitted(name.as_str()).await?;
            // The port is set by the connector.
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Checks what can be checked without DNS: the scheme, and an IP-literal host (which bypasses the
/// resolver). Host names are checked by [`GuardedResolver`] when connecting.
fn check_url(url: &Url, allowlist: &FetchAllowlist) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Scheme(url.scheme().to_string()));
    }
    let host = url.host_str().ok_or(FetchError::InvalidUrl)?;
    // The URL parser has already normalised IPv4 spellings (`0x7f.1`, `2130706433`) to dotted
    // quads; IPv6 literals keep their brackets here.
    let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else {
        return Ok(()); // a host name: the resolver checks it
    };
    if allowlist.permits(ip) { Ok(()) } else { Err(FetchError::NonPublic(ip.to_string())) }
}

/// Follows at most [`MAX_REDIRECTS`] redirects, each to a URL `check_url` accepts, never in a loop.
fn redirect_policy(allowlist: Arc<FetchAllowlist>) -> Policy {
    Policy::custom(move |attempt: Attempt<'_>| {
        if attempt.previous().contains(attempt.url()) {
            return attempt.error(FetchError::RedirectLoop);
        }
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(FetchError::TooManyRedirects);
        }
        match check_url(attempt.url(), &allowlist) {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(e),
        }
    })
}

/// Fetches agents' media URLs under the policy above. One per process; cheap to share.
#[derive(Debug, Clone)]
pub struct MediaFetcher {
    http: reqwest::Client,
    allowlist: Arc<FetchAllowlist>,
}

impl MediaFetcher {
    /// A fetcher allowing public addresses plus `allowlist`, resolving with the system resolver.
    pub fn new(allowlist: FetchAllowlist) -> Self {
        Self::with_lookup(allowlist, system_lookup())
    }

    /// As [`MediaFetcher::new`], resolving host names with `lookup` (tests play DNS with it).
    pub fn with_lookup(allowlist: FetchAllowlist, lookup: Lookup) -> Self {
        let allowlist = Arc::new(allowlist);
        let http = reqwest::Client::builder()
            .dns_resolver(GuardedResolver { allowlist: allowlist.clone(), lookup })
            .redirect(redirect_policy(allowlist.clone()))
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("wechat-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("reqwest client builds");
        Self { http, allowlist }
    }

    /// Downloads `url`: its content type and at most `max_bytes` bytes.
    pub async fn fetch(&self, url: &str, max_bytes: usize) -> Result<(String, Vec<u8>), FetchError> {
        let url = Url::parse(url).map_err(|_| FetchError::InvalidUrl)?;
        check_url(&url, &self.allowlist)?;
        let response = self.http.get(url).send().await.map_err(request_error)?;
        crate::read_capped(response, max_bytes).await.map_err(|e| match e {
            crate::CappedReadError::Status(status) => FetchError::Status(status),
            crate::CappedReadError::TooLarge => FetchError::TooLarge(max_bytes),
            crate::CappedReadError::Read(e) => request_error(e),
        })
    }
}

/// Our own refusal (from the resolver or the redirect policy) when it is in the error's chain,
/// else a timeout or transport error, without the URL.
fn request_error(e: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<FetchError>() {
            return refusal.clone();
        }
        source = cause.source();
    }
    if e.is_timeout() {
        return FetchError::Timeout;
    }
    FetchError::Transport(crate::transport_error_text(e))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::response::Redirect;
    use axum::routing::get;

    use super::*;

    /// DNS where every name is `ips`.
    fn dns(ips: &[&str]) -> Lookup {
        let ips: Vec<IpAddr> = ips.iter().map(|s| s.parse().unwrap()).collect();
        Arc::new(move |_| {
            let ips = ips.clone();
            Box::pin(async move { Ok(ips) })
        })
    }

    /// Serves `router` on loopback; returns its port.
    async fn serve(router: axum::Router) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        port
    }

    /// A server whose `/secret` counts its callers, `/pic` answers bytes, and `/hop/{n}` redirects
    /// n times before landing on `/pic`.
    async fn server(secret_calls: Arc<AtomicUsize>, redirect_to: String) -> u16 {
        serve(
            axum::Router::new()
                .route(
                    "/secret",
                    get(move || async move {
                        secret_calls.fetch_add(1, Ordering::SeqCst);
                        "instance credentials"
                    }),
                )
                .route("/pic", get(|| async { ([("content-type", "image/png")], "png") }))
                .route("/away", get(move || async move { Redirect::temporary(&redirect_to) }))
                .route(
                    "/hop/{n}",
                    get(|axum::extract::Path(n): axum::extract::Path<u32>| async move {
                        Redirect::temporary(&if n == 0 { "/pic".to_string() } else { format!("/hop/{}", n - 1) })
                    }),
                ),
        )
        .await
    }

    #[tokio::test]
    async fn a_public_looking_name_that_resolves_to_loopback_is_refused_before_connecting() {
        let calls = Arc::new(AtomicUsize::new(0));
        let port = server(calls.clone(), "/pic".into()).await;
        let fetcher = MediaFetcher::with_lookup(FetchAllowlist::default(), dns(&["127.0.0.1"]));
        let error = fetcher.fetch(&format!("http://cdn.example.com:{port}/secret"), 1000).await.unwrap_err();
        assert_eq!(error, FetchError::NonPublic("cdn.example.com resolves to 127.0.0.1".into()));
        assert!(!error.is_retryable());
        assert_eq!(calls.load(Ordering::SeqCst), 0, "never connected");
    }

    #[tokio::test]
    async fn a_public_looking_host_redirecting_to_loopback_is_refused_at_the_redirect() {
        let calls = Arc::new(AtomicUsize::new(0));
        // cdn.example.com is allowed by name (standing in for a public host we cannot reach
        // here); its redirect to the 127.0.0.1 literal is checked again and refused.
        let port = server(calls.clone(), String::new()).await;
        let port = server(calls.clone(), format!("http://127.0.0.1:{port}/secret")).await;
        let allowlist = FetchAllowlist::parse("cdn.example.com").unwrap();
        let fetcher = MediaFetcher::with_lookup(allowlist, dns(&["127.0.0.1"]));
        let error = fetcher.fetch(&format!("http://cdn.example.com:{port}/away"), 1000).await.unwrap_err();
        assert_eq!(error, FetchError::NonPublic("127.0.0.1".into()));
        assert_eq!(calls.load(Ordering::SeqCst), 0, "the redirect target was never fetched");
        // A redirect to another name that resolves to loopback is refused by the resolver.
        let port = server(calls.clone(), format!("http://metadata.example.net:{port}/secret")).await;
        let error = fetcher.fetch(&format!("http://cdn.example.com:{port}/away"), 1000).await.unwrap_err();
        assert_eq!(error, FetchError::NonPublic("metadata.example.net resolves to 127.0.0.1".into()));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // The allowed host itself is fetched.
        let (content_type, body) = fetcher.fetch(&format!("http://CDN.example.com:{port}/pic"), 1000).await.unwrap();
        assert_eq!((content_type.as_str(), body.as_slice()), ("image/png", b"png".as_slice()));
    }

    #[tokio::test]
    async fn dns_answers_keep_only_public_addresses() {
        let resolver = GuardedResolver {
            allowlist: Arc::new(FetchAllowlist::default()),
            lookup: dns(&["127.0.0.1", "93.184.216.34", "10.0.0.8", "2606:4700::1", "::1"]),
        };
        let ips = resolver.permitted("mixed.example.com").await.unwrap();
        assert_eq!(ips, ["93.184.216.34".parse::<IpAddr>().unwrap(), "2606:4700::1".parse().unwrap()]);
        let resolver = GuardedResolver {
            allowlist: Arc::new(FetchAllowlist::parse("10.0.0.0/8").unwrap()),
            lookup: dns(&["169.254.169.254", "10.0.0.8"]),
        };
        assert_eq!(resolver.permitted("internal.example").await.unwrap(), ["10.0.0.8".parse::<IpAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn ip_literals_schemes_and_malformed_urls_are_refused_without_a_request() {
        let fetcher = MediaFetcher::with_lookup(FetchAllowlist::default(), dns(&[]));
        for (url, expected) in [
            ("http://127.0.0.1:9/x", FetchError::NonPublic("127.0.0.1".into())),
            ("http://[::1]:9/x", FetchError::NonPublic("::1".into())),
            ("http://[::ffff:7f00:1]/x", FetchError::NonPublic("::ffff:127.0.0.1".into())),
            ("http://169.254.169.254/latest/meta-data/", FetchError::NonPublic("169.254.169.254".into())),
            ("http://0x7f.1/x", FetchError::NonPublic("127.0.0.1".into())), // URL parsing normalises it
            ("http://2130706433/x", FetchError::NonPublic("127.0.0.1".into())),
            ("file:///etc/passwd", FetchError::Scheme("file".into())),
            ("ftp://files.example.com/a.png", FetchError::Scheme("ftp".into())),
            ("gopher://127.0.0.1:6379/_INFO", FetchError::Scheme("gopher".into())),
            ("not a url", FetchError::InvalidUrl),
            ("/relative.png", FetchError::InvalidUrl),
        ] {
            let error = fetcher.fetch(url, 1000).await.unwrap_err();
            assert_eq!(error, expected, "{url}");
            assert!(!error.is_retryable(), "{url}");
        }
    }

    #[tokio::test]
    async fn redirects_are_capped_and_loops_refused() {
        let port = server(Arc::new(AtomicUsize::new(0)), "/away".into()).await;
        let fetcher = MediaFetcher::with_lookup(FetchAllowlist::parse("127.0.0.1/32").unwrap(), dns(&[]));
        let base = format!("http://127.0.0.1:{port}");
        assert!(fetcher.fetch(&format!("{base}/hop/{}", MAX_REDIRECTS - 1), 1000).await.is_ok());
        assert_eq!(fetcher.fetch(&format!("{base}/hop/{}", MAX_REDIRECTS + 1), 1000).await, Err(FetchError::TooManyRedirects));
        assert_eq!(fetcher.fetch(&format!("{base}/away"), 1000).await, Err(FetchError::RedirectLoop));
        // Each redirect is checked like the first URL: scheme and address.
        for (target, expected) in [
            // A Location that is not an http(s) URI is not followed at all: the 307 stands.
            ("file:///etc/passwd", FetchError::Status(307)),
            ("http://169.254.169.254/latest/meta-data/", FetchError::NonPublic("169.254.169.254".into())),
            ("http://[fd00::1]/x", FetchError::NonPublic("fd00::1".into())),
        ] {
            let port = server(Arc::new(AtomicUsize::new(0)), target.into()).await;
            let error = fetcher.fetch(&format!("http://127.0.0.1:{port}/away"), 1000).await.unwrap_err();
            assert_eq!(error, expected, "{target}");
            assert!(!error.is_retryable(), "{target}");
        }
    }

    #[tokio::test]
    async fn over_size_answers_and_dead_servers_are_told_apart() {
        let port = server(Arc::new(AtomicUsize::new(0)), "/pic".into()).await;
        let fetcher = MediaFetcher::with_lookup(FetchAllowlist::parse("127.0.0.1/32").unwrap(), dns(&[]));
        assert_eq!(fetcher.fetch(&format!("http://127.0.0.1:{port}/pic"), 2).await, Err(FetchError::TooLarge(2)));
        assert_eq!(fetcher.fetch(&format!("http://127.0.0.1:{port}/nothing"), 10).await, Err(FetchError::Status(404)));
        // Nothing listens on port 9 (discard): a connection error, retried later.
        let error = fetcher.fetch("http://127.0.0.1:9/pic", 10).await.unwrap_err();
        assert!(matches!(error, FetchError::Transport(_)), "{error:?}");
        assert!(error.is_retryable());
    }

    #[test]
    fn only_5xx_408_429_timeouts_and_transport_errors_are_retryable() {
        for status in [500, 502, 503, 504, 408, 429] {
            assert!(FetchError::Status(status).is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 404, 410, 451, 304] {
            assert!(!FetchError::Status(status).is_retryable(), "{status}");
        }
        assert!(FetchError::Timeout.is_retryable());
        assert!(!FetchError::TooLarge(1).is_retryable());
        assert!(!FetchError::RedirectLoop.is_retryable());
        assert!(!FetchError::TooManyRedirects.is_retryable());
    }
}
