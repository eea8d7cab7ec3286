//! Webhook load: `cargo bench --bench webhook`.
//!
//! Starts the whole appliance in-process over TLS on 127.0.0.1:0 with a connected
//! account (the fake Flowlu of the integration tests) and a fake AMI replaying the
//! recorded `sip-click-to-call` transcript, then sends a bounded number of requests from
//! a few concurrent clients on loopback, each keeping its connection alive:
//!
//! - `health.check` ([`HEALTH`] requests);
//! - `call.make` ([`CALLS`] requests, each for its own employee and with its own Flowlu
//!   `call_id`): the whole path with the default busy-agent check (the engine, then the
//!   PBX's extension list), the idempotency claim, the call row and its `call.init`
//!   written, and the AMI Originate answered by the fake (the recorded answer).
//!
//! Prints requests/s and latency percentiles per kind. Plain `harness = false` main, no
//! extra dependency; `cargo test --all-targets` runs a small unmeasured pass.

#[path = "../tests/it/fake_flowlu.rs"]
mod fake_flowlu;
#[path = "../tests/it/fake_pbx/mod.rs"]
mod fake_pbx;
#[path = "../tests/it/flowlu_support.rs"]
mod flowlu_support;
#[path = "../tests/it/harness.rs"]
mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use fake_pbx::ami::{FakeAmi, Script};
use flowlu_support::Ctx;

const CLIENTS: usize = 4;
const HEALTH: usize = 4000;
const CALLS: usize = 2000;

struct Target {
    base: String,
    path: String,
    cert_pem: String,
}

impl Target {
    fn agent(&self) -> ureq::Agent {
        let cert = ureq::tls::Certificate::from_pem(self.cert_pem.as_bytes())
            .unwrap()
            .to_owned();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
            .build();
        ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent()
    }
}

/// Sends `n` requests made by `body(i)` from [`CLIENTS`] threads; every answer must have
/// `status`. Returns the wall time and each request's latency.
fn load(
    target: &Arc<Target>,
    n: usize,
    status: u16,
    body: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> (Duration, Vec<Duration>) {
    let next = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(body);
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (target, next, body) = (target.clone(), next.clone(), body.clone());
            std::thread::spawn(move || {
                let agent = target.agent();
                let url = format!("{}{}", target.base, target.path);
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return latencies;
                    }
                    let payload = body(i).to_string();
                    let t = Instant::now();
                    let mut resp = agent
                        .post(&url)
                        .header("content-type", "application/json")
                        .send(payload.as_bytes())
                        .expect("request");
                    let text = resp.body_mut().read_to_string().unwrap();
                    latencies.push(t.elapsed());
                    assert_eq!(resp.status().as_u16(), status, "{text}");
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in threads {
        all.extend(t.join().expect("client thread"));
    }
    (started.elapsed(), all)
}

fn report(name: &str, (wall, mut latencies): (Duration, Vec<Duration>)) {
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "{name:<13} {:>6} requests, {CLIENTS} clients: {:>7.0} req/s   p50 {:>6.2} ms   p90 {:>6.2} ms   p99 {:>6.2} ms   max {:>6.2} ms",
        latencies.len(),
        latencies.len() as f64 / wall.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
    );
}

fn main() {
    // Problems (RUST_LOG overrides) go to stderr; the access log stays quiet.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let measure = std::env::args().any(|a| a == "--bench");
    let (health, calls) = if measure { (HEALTH, CALLS) } else { (20, 20) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Keep the fakes and the appliance alive (on the runtime) while the clients run.
    let (target, rig, fake) = rt.block_on(async {
        let script = Script::new("sip-click-to-call")
            .idle_resync()
            .canned(
                "PJSIPShowEndpoints",
                "sip-actions-registered",
                "eps-1",
                usize::MAX,
            )
            .canned(
                "PJSIPShowContacts",
                "sip-actions-registered",
                "contacts-1",
                usize::MAX,
            );
        let fake = FakeAmi::start(vec![script]).await;
        let port = fake.port();
        let r = flowlu_support::rig(|c| {
            c.pbx = fake_pbx::pbx_config("asterisk", port);
            c.pbx.context = "from-crm".into();
        })
        .await;
        r.fake.add_user("tok-1", "u1", "Ann", "");
        let s = r
            .session(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1"))
            .await;
        assert_eq!(r.act("connect", &s, &[]).await.status, 200);
        let id = r.integration_id("acc-1");
        r.app
            .state
            .db
            .with_conn(|c| {
                for i in 0..calls {
                    let user = format!("u{i}");
                    appliance::flowlu::store::add_user(c, id, &user, "")?;
                    let ext = (10_000 + i).to_string();
                    appliance::flowlu::store::set_extension(c, id, &user, Some(&ext))?;
                }
                let mut s = appliance::flowlu::store::settings(c, id)?;
                s.default_country_code = "7".into();
                appliance::flowlu::store::save_settings(c, id, &s)
            })
            .unwrap();
        let secret: String = r
            .app
            .db()
            .query_row(
                "SELECT webhook_secret FROM flowlu_integrations WHERE id = ?1",
                [id],
                |row| row.get(0),
            )
            .unwrap();
        harness::eventually(10, "the PBX connection", async || {
            r.app.state.pbx_handle.is_up().then_some(())
        })
        .await;
        let target = Arc::new(Target {
            base: r.app.base.clone(),
            path: format!("/hooks/flowlu/{id}/{secret}"),
            cert_pem: r.app.cert_pem.clone(),
        });
        (target, r, fake)
    });
    let health_run = load(&target, health, 200, |_| json!({"type": "health.check"}));
    let calls_run = load(&target, calls, 202, |i| {
        json!({"type": "call.make", "data": {
            "user_id": format!("u{i}"),
            "phone": format!("8 999 {:03} {:04}", i / 10_000, i % 10_000),
            "call_id": format!("bench-{i}"),
        }})
    });
    let originates = fake.sent_named("Originate").len();
    assert_eq!(originates, calls, "one Originate per call.make");
    if measure {
        report("health.check", health_run);
        report("call.make", calls_run);
    } else {
        println!("webhook bench: smoke pass ok (run `cargo bench --bench webhook` to measure)");
    }
    rt.block_on(async move {
        rig.app.stop().await.unwrap();
    });
}
