//! Inbound media for agents: the event's `media.url` is a signed, expiring bridge link, served
//! from WeChat's media/get once and then from the cache.

use std::time::Duration;

use wechat_bridge::app::WorkerMode;
use wechat_bridge::wechat::message::{Body, Push};
use wechat_bridge::wechat::sim::PushMode;

use crate::helpers::*;

#[tokio::test]
async fn an_inbound_image_gets_a_signed_link_that_serves_its_bytes() {
    let app = spawn_app_with(WorkerMode::Background, |s| {
        s.insert("BRIDGE_PUBLIC_URL".into(), "https://bridge.example".into());
    })
    .await;
    let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4];
    let media_id = app.wechat.add_media("image/jpeg", jpeg.clone());
    let push = Push {
        to_user_name: ACCOUNT.into(),
        from_user_name: "o_media".into(),
        create_time: wechat_bridge::store::now_ms() / 1000,
        body: Body::Image {
            pic_url: "http://mmbiz.example/x.jpg".into(),
            media_id: media_id.clone(),
            msg_id: app.wechat.next_msg_id(),
        },
    };
    assert_eq!(app.push(&push, PushMode::Safe).await.status, 200);
    wait_for("the image event", Duration::from_secs(10), || async { !app.wechat_events().is_empty() }).await;
    let media = app.wechat_events()[0].1["body"]["media"].clone();
    assert_eq!(media["pic_url"], "http://mmbiz.example/x.jpg");
    let link = media["url"].as_str().unwrap().to_string();
    assert!(link.starts_with(&format!("https://bridge.example/media/{media_id}?expires=")), "{link}");
    let local = link.replace("https://bridge.example", &app.address);

    for _ in 0..2 {
        let response = reqwest::get(&local).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "image/jpeg");
        assert_eq!(response.bytes().await.unwrap().to_vec(), jpeg);
    }
    let downloads = app.wechat.requests().iter().filter(|r| *r == "/cgi-bin/media/get").count();
    assert_eq!(downloads, 1, "the second fetch is served from the cache");

    let tampered = local.replace(&media_id, "MEDIA_other");
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 401);
    let unsigned = local.split('?').next().unwrap().to_string();
    assert_eq!(reqwest::get(&unsigned).await.unwrap().status(), 401);
    let token = app.wechat.requests().len();
    assert!(!link.contains("access_token") && token > 0);
}
