//! The hosts that share a database (`public.hosts`): a daemon records itself with its name and
//! address, beats with the tenants it has ready workers for, marks a host whose beat stopped
//! as gone, and records its own clean stop; `apotheca status --cluster` shows all of it.

use std::time::Duration;

use apotheca_testkit::system::daemon::PATIENCE;
use apotheca_testkit::system::Apotheca;
use serde_json::Value;

async fn cluster(a: &Apotheca) -> Vec<Value> {
    let out = a.ok(&["status", "--cluster", "--json"]).await;
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn host<'a>(hosts: &'a [Value], name: &str) -> &'a Value {
    hosts
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("no host {name} in {hosts:?}"))
}

/// Polls `status --cluster` until `ok` holds for it.
async fn until(a: &Apotheca, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let hosts = cluster(a).await;
        if ok(&hosts) {
            return hosts;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {hosts:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn hosts_beat_with_their_tenants_and_a_silent_one_is_gone() {
    let a = Apotheca::migrated().await;
    a.create("acme").await;
    assert!(a
        .ok(&["status", "--cluster"])
        .await
        .contains("no host has run"));
    // Another host that beat a minute ago and never stopped: it died.
    a.db.client()
        .await
        .execute(
            "INSERT INTO public.hosts (name, address, version, heartbeat_at, workers)
             VALUES ('host-b', '10.0.0.2:8080', '0.1.0', now() - interval '1 minute', '{\"acme\": 1}')",
            &[],
        )
        .await
        .unwrap();
    let d = a
        .serve(&[
            ("APOTHECA_CONTROL__SERVE__HOST_NAME", "host-a"),
            ("APOTHECA_CONTROL__SERVE__HOST_ADDRESS", "10.0.0.1:8080"),
            ("APOTHECA_CONTROL__SERVE__HEARTBEAT_SECS", "1"),
            ("APOTHECA_CONTROL__SERVE__HOST_GONE_SECS", "3"),
        ])
        .await;
    d.wake("acme").await;
    let hosts = until(&a, "host-a beats with acme's worker", |h| {
        h.iter()
            .any(|x| x["name"] == "host-a" && x["workers"]["acme"] == 1)
    })
    .await;
    let me = host(&hosts, "host-a");
    assert_eq!(
        (me["state"].as_str(), me["address"].as_str()),
        (Some("live"), Some("10.0.0.1:8080"))
    );
    assert_eq!(me["workers"]["public"], 1, "{me}");
    let b = host(&hosts, "host-b");
    assert_eq!(b["state"], "gone", "{b}");
    assert_eq!(
        b["workers"],
        serde_json::json!({}),
        "a gone host holds nothing"
    );
    let marked: Vec<bool> = apotheca_testkit::column(
        &a.db.client().await,
        "SELECT gone_at IS NOT NULL FROM public.hosts WHERE name = 'host-b'",
    )
    .await;
    assert_eq!(marked, [true], "host-a marked host-b gone");
    let text = a.ok(&["status", "--cluster"]).await;
    assert!(
        text.contains("host-a") && text.contains("acme (1)"),
        "{text}"
    );

    // A clean stop is recorded as such.
    assert!(d.stop().await.success());
    let hosts = cluster(&a).await;
    let me = host(&hosts, "host-a");
    assert_eq!(me["state"], "stopped", "{me}");
    assert_eq!(me["workers"], serde_json::json!({}));
}
