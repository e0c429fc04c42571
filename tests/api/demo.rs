//! The README's first command: `demo --once` plays the exchange and exits 0.

use std::process::Command;

#[test]
fn demo_once_plays_the_exchange_and_exits_zero() {
    let output = Command::new(env!("CARGO_BIN_EXE_wechat-bridge"))
        .args(["demo", "--once", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.matches("✓ delivered").count(), 6, "{stdout}");
    assert_eq!(stdout.matches("✕ failed").count(), 1, "the reply outside the 48-hour window: {stdout}");
    assert!(stdout.contains("45015"));
    assert!(stdout.contains("every step succeeded"));
}

/// `demo --platform webhook --once`: signed events to the built-in receiver (each verified),
/// replies through `POST /api/v1/messages`, their outcomes back as `message.status`.
#[test]
fn demo_once_on_the_webhook_platform_plays_the_exchange_and_exits_zero() {
    let output = Command::new(env!("CARGO_BIN_EXE_wechat-bridge"))
        .args(["demo", "--once", "--platform", "webhook", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.matches("WeChat → app").count(), 4, "{stdout}");
    assert_eq!(stdout.matches("via POST /api/v1/messages").count(), 3, "{stdout}");
    assert_eq!(stdout.matches("✓ delivered").count(), 6, "{stdout}");
    assert_eq!(stdout.matches("✕ failed").count(), 1, "the reply outside the 48-hour window: {stdout}");
    assert!(stdout.contains("45015"));
    assert!(stdout.contains("message.status delivered for order-1001"), "{stdout}");
    assert!(stdout.contains("every signature verified") && stdout.contains("every step succeeded"));
}

/// `demo --platform chatwoot --once`: customers in the Chatwoot simulator's API inbox, agents'
/// replies by its signed webhook, each outcome shown on the agent's message.
#[test]
fn demo_once_on_the_chatwoot_platform_plays_the_exchange_and_exits_zero() {
    let output = Command::new(env!("CARGO_BIN_EXE_wechat-bridge"))
        .args(["demo", "--once", "--platform", "chatwoot", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.matches("WeChat → Chatwoot").count(), 4, "{stdout}");
    assert_eq!(stdout.matches("Chatwoot → WeChat").count(), 3, "{stdout}");
    assert_eq!(stdout.matches("✓ delivered").count(), 6, "{stdout}");
    assert_eq!(stdout.matches("✕ failed").count(), 1, "the reply outside the 48-hour window: {stdout}");
    assert!(stdout.contains("Chatwoot shows failed (45015: the customer has not written in 48 hours"), "{stdout}");
    assert!(stdout.contains("every step succeeded"));
}
