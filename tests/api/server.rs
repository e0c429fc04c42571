//! The HTTP server itself (DESIGN.md "Flow and guarantees" 4): slow and idle clients are timed
//! out, connections are capped, every response carries the browser security headers, and SIGTERM
//! ends the real binary within 10 s even with the console's live stream open.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use wechat_bridge::app::WorkerMode;
use wechat_bridge::wechat::sim::PushMode;

use crate::helpers::*;

/// The bridge with the given HTTP limits (seconds, seconds, connections).
async fn app_with_limits(header_secs: u64, idle_secs: u64, max_connections: u32) -> TestApp {
    spawn_app_with(WorkerMode::Manual, |s| {
        s.insert("BRIDGE_HEADER_TIMEOUT_SECS".into(), header_secs.to_string());
        s.insert("BRIDGE_IDLE_TIMEOUT_SECS".into(), idle_secs.to_string());
        s.insert("BRIDGE_MAX_CONNECTIONS".into(), max_connections.to_string());
    })
    .await
}

fn socket_addr(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_string()
}

/// A client that pools no connections, so each request is a fresh connection.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build().unwrap()
}

/// Resolves when the server has closed `socket` (EOF or reset); reads and discards anything else.
async fn closed_by_server(socket: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// Reads one `Content-Length` response (head and body) from a kept-alive connection.
async fn read_response(socket: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed mid-response: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn slow_loris_clients_are_cut_off_after_the_header_timeout_while_others_are_served() {
    let app = app_with_limits(1, 30, 1000).await;
    let addr = socket_addr(&app);
    let mut lorises = Vec::new();
    for _ in 0..300 {
        let mut socket = TcpStream::connect(&addr).await.unwrap();
        // A request head that never ends.
        socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nX-Slow: ").await.unwrap();
        lorises.push(socket);
    }
    let opened = Instant::now();

    let client = fresh_client();
    let started = Instant::now();
    let health = client.get(format!("{}/healthz", app.address)).send().await.expect("healthz answers");
    let healthz_took = started.elapsed();
    assert_eq!(health.status(), 200);
    println!("/healthz under 300 slow-loris clients: {} ms", healthz_took.as_millis());
    assert!(healthz_took < Duration::from_secs(1), "healthz took {healthz_took:?}");
    let push = app.wechat.text("o_loris", "still served");
    let reply = app.push(&push, PushMode::Safe).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "success"));

    let all_closed = tokio::time::timeout(Duration::from_secs(4), async {
        for socket in &mut lorises {
            closed_by_server(socket).await;
        }
    })
    .await;
    assert!(all_closed.is_ok(), "slow-loris connections still open after {:?}", opened.elapsed());
    println!("300 slow-loris connections closed {} ms after they were opened", opened.elapsed().as_millis());
    assert_eq!(client.get(format!("{}/healthz", app.address)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn idle_keep_alive_and_silent_connections_are_closed_after_the_idle_timeout() {
    let app = app_with_limits(5, 1, 1000).await;
    let addr = socket_addr(&app);

    // A kept-alive connection that asks once, then waits.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n").await.unwrap();
    let response = read_response(&mut kept).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // A connection that never says a word (not even enough to tell HTTP/1 from HTTP/2).
    let mut silent = TcpStream::connect(&addr).await.unwrap();

    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        closed_by_server(&mut kept).await;
        closed_by_server(&mut silent).await;
    })
    .await;
    assert!(closed.is_ok(), "idle connections still open after {:?}", started.elapsed());
    println!("idle connections closed after {} ms (idle timeout 1 s)", started.elapsed().as_millis());
}

#[tokio::test]
async fn connections_past_the_cap_get_503_at_once_and_are_served_again_once_released() {
    let app = app_with_limits(30, 30, 4).await;
    let addr = socket_addr(&app);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut socket = TcpStream::connect(&addr).await.unwrap();
        socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n").await.unwrap();
        assert!(read_response(&mut socket).await.starts_with("HTTP/1.1 200"));
        held.push(socket);
    }

    let started = Instant::now();
    let refused = fresh_client().get(format!("{}/healthz", app.address)).send().await.expect("an answer, not a timeout");
    let took = started.elapsed();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["connection"], "close");
    assert!(took < Duration::from_secs(1), "the 503 took {took:?}");
    println!("503 past the cap in {} ms", took.as_millis());

    drop(held);
    wait_for("a request served once connections are released", Duration::from_secs(5), || async {
        fresh_client().get(format!("{}/healthz", app.address)).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app_with(WorkerMode::Manual, |s| {
        s.insert("BRIDGE_ADMIN_TOKEN".into(), "admin-token-for-tests".into());
    })
    .await;
    let client = fresh_client();
    let responses = [
        ("/", client.get(format!("{}/", app.address)).send().await.unwrap()),
        ("/app.js", client.get(format!("{}/app.js", app.address)).send().await.unwrap()),
        ("/api/session", client.get(format!("{}/api/session", app.address)).send().await.unwrap()),
        ("/api/messages 401", client.get(format!("{}/api/messages", app.address)).send().await.unwrap()),
        (
            "/api/messages 200",
            client.get(format!("{}/api/messages", app.address)).bearer_auth("admin-token-for-tests").send().await.unwrap(),
        ),
        ("POST /webhooks/wechat 401", client.post(app.webhook()).body("<xml/>").send().await.unwrap()),
        ("/healthz", client.get(format!("{}/healthz", app.address)).send().await.unwrap()),
        ("404", client.get(format!("{}/no-such-page", app.address)).send().await.unwrap()),
    ];
    for (what, response) in &responses {
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert_eq!(
            header("content-security-policy"),
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            "{what}"
        );
        assert_eq!(header("x-frame-options"), "DENY", "{what}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{what}");
    }
    // The console works under that policy: no inline script, style or handler in its page.
    let page = client.get(format!("{}/", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("<script>") && !page.contains("style=") && !page.contains("<style"), "{page}");
    assert!(!page.contains(" onclick=") && !page.contains(" onload=") && !page.contains("javascript:"), "{page}");
}

// ---- SIGTERM, on the real binary ----------------------------------------------------------

/// Kills the child when dropped, so a failing test leaves no process behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sigterm_with_an_open_live_stream_exits_within_10_seconds() {
    // The simulators of a test app; the bridge under test is the real binary, on its own database.
    let app = spawn_app_with(WorkerMode::Manual, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut settings = app.settings.clone();
    settings.insert("BRIDGE_LISTEN".into(), format!("127.0.0.1:{port}"));
    settings.insert("BRIDGE_DATABASE_URL".into(), format!("sqlite://{}", dir.path().join("serve.db").display()));
    settings.insert("BRIDGE_ADMIN_TOKEN".into(), "admin-token-for-tests".into());
    settings.insert("RUST_LOG".into(), "warn".into());
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_wechat-bridge"))
            .arg("serve")
            .env_clear()
            .envs(&settings)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(child.0.try_wait().unwrap().is_none(), "serve exited early");
        assert!(Instant::now() < deadline, "serve never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut stream = client.get(format!("{base}/api/stream")).bearer_auth("admin-token-for-tests").send().await.unwrap();
    assert_eq!(stream.status(), 200);
    // A webhook in flight at the same time does not hold the exit up either.
    let reply = app.wechat.push(&format!("{base}/webhooks/wechat"), &app.wechat.text("o_term", "bye"), PushMode::Safe).await;
    assert_eq!(reply.unwrap().status, 200);

    let pid = child.0.id().to_string();
    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(12), "still running {:?} after SIGTERM", signalled.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = signalled.elapsed();
    println!("serve exited {} ms after SIGTERM with the live stream open ({status})", took.as_millis());
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(status.success(), "{status}");
    // The stream was ended by the server, not cut mid-event.
    let rest = tokio::time::timeout(Duration::from_secs(1), async { while let Ok(Some(_)) = stream.chunk().await {} }).await;
    assert!(rest.is_ok(), "the stream is still open after the process exited");
}

#[test]
fn http_limits_have_defaults_and_are_read_from_the_toml_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bridge.toml");
    let required = "wechat_token = \"t\"\nwechat_app_id = \"wx1\"\nwechat_app_secret = \"s\"\nvonage_application_id = \"a\"\n";
    let pem = keypair().0.replace('\n', "\\n");
    std::fs::write(&file, format!("{required}vonage_private_key = \"{pem}\"\n")).unwrap();
    let defaults = wechat_bridge::config::Config::load(Some(&file)).unwrap().http;
    assert_eq!(defaults, wechat_bridge::config::HttpConfig::default());
    assert_eq!((defaults.max_connections, defaults.header_timeout.as_secs(), defaults.idle_timeout.as_secs()), (512, 10, 60));
    let limits = "bridge_max_connections = 64\nbridge_header_timeout_secs = 3\nbridge_idle_timeout_secs = 20\n";
    std::fs::write(&file, format!("{required}vonage_private_key = \"{pem}\"\n{limits}")).unwrap();
    let http = wechat_bridge::config::Config::load(Some(&file)).unwrap().http;
    assert_eq!((http.max_connections, http.header_timeout.as_secs(), http.idle_timeout.as_secs()), (64, 3, 20));
}

#[tokio::test]
async fn out_of_file_descriptors_the_accept_loop_backs_off_and_recovers() {
    // `serve` under a hard open-files limit of 64: the flood below runs it out of descriptors
    // (EMFILE on accept). It must neither exit nor spin, and serve again once the flood is gone.
    let app = spawn_app_with(WorkerMode::Manual, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut settings = app.settings.clone();
    settings.insert("BRIDGE_LISTEN".into(), format!("127.0.0.1:{port}"));
    settings.insert("BRIDGE_DATABASE_URL".into(), format!("sqlite://{}", dir.path().join("serve.db").display()));
    settings.insert("BRIDGE_IDLE_TIMEOUT_SECS".into(), "2".into());
    settings.insert("RUST_LOG".into(), "warn".into());
    let mut child = KillOnDrop(
        Command::new("sh")
            .args(["-c", "ulimit -n 64 && exec \"$0\" serve", env!("CARGO_BIN_EXE_wechat-bridge")])
            .env_clear()
            .envs(&settings)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Read stderr on a thread, so a chatty child never blocks on a full pipe.
    let mut stderr = child.0.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
        log
    });
    let client = fresh_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(child.0.try_wait().unwrap().is_none(), "serve exited early");
        assert!(Instant::now() < deadline, "serve never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut flood = Vec::new();
    for _ in 0..200 {
        if let Ok(socket) = TcpStream::connect(format!("127.0.0.1:{port}")).await {
            flood.push(socket);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(child.0.try_wait().unwrap().is_none(), "serve died under the flood");
    drop(flood);

    wait_for("healthz once the flood is gone", Duration::from_secs(10), || async {
        client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.0.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{status}: {log}");
    let backoffs = log.matches("accept failed").count();
    println!("accept errors logged under a 64-descriptor limit: {backoffs}");
    // Each is followed by a 100 ms pause: a spinning loop would log thousands.
    assert!(backoffs < 200, "{backoffs} accept errors: the loop spun");
}
