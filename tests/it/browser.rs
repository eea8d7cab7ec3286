//! The settings page in a real browser: headless Chromium driven through chromedriver's
//! WebDriver HTTP protocol. A parent page on another origin (http://localhost:<port>,
//! standing in for Flowlu) POSTs the context into an iframe with an auto-submitted form,
//! the way Flowlu does; the test fills and saves forms inside the iframe, reads the
//! values back from the page and the database, and keeps full-page screenshots in
//! `target/browser-screenshots/` ([`artifacts`]). Needs the Debian packages `chromium`
//! and `chromium-driver`.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::flowlu_support::{Ctx, rig};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where the screenshots go: `target/browser-screenshots/` of the build that runs the
/// tests (the test binary is `target/<profile>/deps/it-…`).
fn artifacts() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Serves one HTML page (set after start) on http://localhost:<port>/.
async fn parent_server(page: Arc<Mutex<String>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let (status, body) = if buf.starts_with(b"GET / ") {
                    ("200 OK", page.lock().unwrap().clone())
                } else {
                    ("404 Not Found", String::new())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// The iframe context as the hidden fields of the parent page's auto-submitted form.
fn hidden_inputs(ctx: &Ctx) -> String {
    ctx.fields(false)
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                html_escape(k),
                html_escape(v)
            )
        })
        .collect()
}

/// chromedriver plus one browser session; both are ended on drop.
struct Browser {
    driver: Child,
    base: String,
    session: Option<String>,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = self
                .agent
                .delete(format!("{}/session/{s}", self.base))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    fn start() -> Browser {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is not installed (Debian packages chromium and chromium-driver; .ci/run installs them)");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .proxy(None)
            .build()
            .new_agent();
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: None,
            agent,
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = b
                .agent
                .get(format!("{}/status", b.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start in 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1000,1800",
            format!("--user-data-dir={}", b._profile.path().display()),
        ]);
        let created = b.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
            }}})),
        );
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_string();
        b.session = Some(id);
        b
    }

    /// One WebDriver call; returns `value`, panicking on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = match &self.session {
            Some(s) => format!("{}/session/{s}{path}", self.base),
            None => format!("{}{path}", self.base),
        };
        let mut resp = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, body) => self.agent.post(&url).send_json(body.unwrap_or(json!({}))),
        }
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = resp.status().as_u16();
        let value: Value = resp.body_mut().read_json().unwrap();
        if status == 200 {
            Ok(value["value"].clone())
        } else {
            Err(value["value"].clone())
        }
    }

    /// Waits (bounded) for an element matching `css` in the current frame.
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(v) = self.try_call(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            ) {
                return v[ELEMENT]
                    .as_str()
                    .unwrap_or_else(|| panic!("not an element: {v}"))
                    .to_string();
            }
            if Instant::now() >= deadline {
                let source = self.try_call("GET", "/source", None).unwrap_or_default();
                panic!("no element {css} within 20 s; page source: {source}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.call("POST", &format!("/element/{el}/clear"), Some(json!({})));
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        );
    }

    fn click(&self, css: &str) {
        let el = self.find(css);
        self.call("POST", &format!("/element/{el}/click"), Some(json!({})));
    }

    fn property(&self, css: &str, name: &str) -> Value {
        let el = self.find(css);
        self.call("GET", &format!("/element/{el}/property/{name}"), None)
    }

    /// Waits (bounded) until the notice's text contains `want`.
    fn wait_notice(&self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self
                .try_call(
                    "POST",
                    "/element",
                    Some(json!({"using": "css selector", "value": "#notice"})),
                )
                .ok()
                .and_then(|v| v[ELEMENT].as_str().map(str::to_string))
                .and_then(|el| {
                    self.try_call("GET", &format!("/element/{el}/text"), None)
                        .ok()
                })
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            if text.contains(want) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "notice {want:?} did not appear in 20 s (last: {text:?})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_settings_form_works_inside_a_cross_site_iframe() {
    let page = Arc::new(Mutex::new(String::new()));
    let parent_port = parent_server(page.clone()).await;
    let parent = format!("http://localhost:{parent_port}");
    let frame_parent = parent.clone();
    let r = rig(move |c| c.flowlu.frame_ancestors = vec![frame_parent]).await;
    r.fake
        .add_user("browser-token", "7", "Anna Browser", "anna@example.com");
    let ctx = Ctx::new("100", "acme.flowlu.com", "browser-token");
    let inputs = hidden_inputs(&ctx);
    *page.lock().unwrap() = format!(
        "<!doctype html><html><head><title>Fake Flowlu</title></head><body>\
         <h1 style=\"font:16px sans-serif\">Fake Flowlu (parent page on {parent})</h1>\
         <form id=\"ctx\" method=\"post\" action=\"{}/integration/settings\" target=\"crm\">\n{inputs}</form>\
         <iframe name=\"crm\" id=\"crm\" style=\"width:960px;height:1650px;border:1px solid #999\"></iframe>\
         <script>document.getElementById('ctx').submit();</script></body></html>",
        r.app.base
    );

    let artifacts = artifacts();
    let shot = artifacts.join("settings-iframe.png");
    let read_back = tokio::task::spawn_blocking(move || {
        let b = Browser::start();
        b.call("POST", "/url", Some(json!({"url": format!("{parent}/")})));
        let frame = b.find("iframe#crm");
        b.call("POST", "/frame", Some(json!({"id": {ELEMENT: frame}})));
        // Inside the iframe: the page rendered after the cross-site POST.
        b.click("#calls > summary");
        b.find("#default_line");
        b.type_into("#default_line", "+74951234567");
        b.type_into("#default_country_code", "7");
        if b.property("#record_calls", "checked") != json!(true) {
            b.click("#record_calls");
        }
        b.click("#incoming_routing input[value=crm]");
        b.click("#save-calls");
        b.wait_notice("Saved.");
        let values = (
            b.property("#default_line", "value"),
            b.property("#default_country_code", "value"),
            b.property("#record_calls", "checked"),
            b.property("#incoming_routing input[value=crm]", "checked"),
        );
        // A second form after the first navigation: the session travels in the page.
        b.click("#mapping > summary");
        b.type_into("input[name=\"ext[7]\"]", "101");
        b.click("#save-mapping");
        b.wait_notice("Saved.");
        let ext = b.property("input[name=\"ext[7]\"]", "value");
        b.call("POST", "/frame/parent", Some(json!({})));
        let png = b.call("GET", "/screenshot", None);
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        std::fs::write(&shot, bytes).unwrap();
        (values, ext)
    })
    .await
    .unwrap();

    let ((line, country, record, routing), ext) = read_back;
    assert_eq!(line, "+74951234567");
    assert_eq!(country, "7");
    assert_eq!(record, true);
    assert_eq!(routing, true);
    assert_eq!(ext, "101");
    let row: (String, String, i64, String) = r
        .app
        .db()
        .query_row(
            "SELECT default_line, default_country_code, record_calls, incoming_routing
             FROM flowlu_settings",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .unwrap();
    assert_eq!(row, ("+74951234567".into(), "7".into(), 1, "crm".into()));
    let ext: String = r
        .app
        .db()
        .query_row(
            "SELECT extension FROM flowlu_extensions WHERE user_id = '7'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(ext, "101");
    assert!(
        std::fs::metadata(artifacts.join("settings-iframe.png"))
            .unwrap()
            .len()
            > 1000
    );
}

/// The page's layout problems at the current width: a horizontal scroll, or an input or
/// select that is clipped (its content wider than its box) or outside the viewport.
const LAYOUT_CHECK: &str = r#"
const problems = [];
const root = document.documentElement;
if (root.scrollWidth > root.clientWidth) {
  problems.push(`page scrolls sideways: ${root.scrollWidth} > ${root.clientWidth}`);
}
for (const el of document.querySelectorAll("input, select, button, textarea")) {
  if (el.type === "hidden" || el.offsetParent === null) continue;
  const box = el.getBoundingClientRect();
  const name = el.id || el.name || el.tagName;
  if (el.scrollWidth > el.clientWidth + 1 && el.type !== "checkbox" && el.type !== "radio") {
    problems.push(`${name} is clipped: ${el.scrollWidth} > ${el.clientWidth}`);
  }
  if (box.left < 0 || box.right > root.clientWidth + 0.5) {
    problems.push(`${name} is outside the viewport: ${box.left}..${box.right}`);
  }
}
return problems;
"#;

/// Opens every section of the page.
const OPEN_ALL: &str = r#"for (const d of document.querySelectorAll("details")) d.open = true; return document.querySelectorAll("details").length;"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_settings_page_fits_flowlu_s_side_panel_and_a_wide_window_in_both_languages() {
    let page = Arc::new(Mutex::new(String::new()));
    let parent_port = parent_server(page.clone()).await;
    let parent = format!("http://localhost:{parent_port}");
    let frame_parent = parent.clone();
    let r = rig(move |c| c.flowlu.frame_ancestors = vec![frame_parent]).await;
    r.fake
        .add_user("layout-token", "7", "Anna Layout", "anna@example.com");
    // A delivery log with rows: the account's events wait (no channel yet), one failed
    // with a long answer.
    let _ = r
        .session(&Ctx::new("100", "acme.flowlu.com", "layout-token"))
        .await;
    let id = r.integration_id("100");
    for n in 1..=3 {
        crate::delivery::add(&r, id, &format!("1733560000.{n}"), "call.completed", n);
    }
    r.app
        .db()
        .execute(
            "UPDATE outbox SET state = 'failed', attempts = 8, last_status = 422,
                    last_error = 'HTTP 422: the receiver refused the event (validation failed for field call.phone_number)'
             WHERE id = (SELECT min(id) FROM outbox)",
            [],
        )
        .unwrap();
    let artifacts = artifacts();
    for lang in ["en", "ru"] {
        let mut ctx = Ctx::new("100", "acme.flowlu.com", "layout-token");
        ctx.language = lang.into();
        let inputs = hidden_inputs(&ctx);
        *page.lock().unwrap() = format!(
            "<!doctype html><html><head><title>Fake Flowlu</title>\
             <style>body{{margin:0}} iframe{{border:0;width:100vw;height:100vh;display:block}}</style></head><body>\
             <form id=\"ctx\" method=\"post\" action=\"{}/integration/settings\" target=\"crm\">\n{inputs}</form>\
             <iframe name=\"crm\" id=\"crm\"></iframe>\
             <script>document.getElementById('ctx').submit();</script></body></html>",
            r.app.base
        );
        let parent = parent.clone();
        let artifacts = artifacts.clone();
        let problems = tokio::task::spawn_blocking(move || {
            let b = Browser::start();
            let mut problems = Vec::new();
            for width in [400, 1280] {
                b.call(
                    "POST",
                    "/window/rect",
                    Some(json!({"width": width, "height": 1400})),
                );
                b.call("POST", "/url", Some(json!({"url": format!("{parent}/")})));
                let frame = b.find("iframe#crm");
                b.call("POST", "/frame", Some(json!({"id": {ELEMENT: frame}})));
                b.find("#summary");
                let sections = b.call(
                    "POST",
                    "/execute/sync",
                    Some(json!({"script": OPEN_ALL, "args": []})),
                );
                assert!(sections.as_u64().unwrap() >= 8, "{sections}");
                let found = b.call(
                    "POST",
                    "/execute/sync",
                    Some(json!({"script": LAYOUT_CHECK, "args": []})),
                );
                for p in found.as_array().unwrap() {
                    problems.push(format!("{lang} at {width} px: {}", p.as_str().unwrap()));
                }
                let height = b.call(
                    "POST",
                    "/execute/sync",
                    Some(json!({"script": "return document.documentElement.scrollHeight;", "args": []})),
                );
                b.call("POST", "/frame/parent", Some(json!({})));
                // The whole page: the window (and so the iframe, 100vh) grown until the
                // page's content fits it (bounded), checked before the shot.
                let mut tall = height.as_u64().unwrap_or(1400).clamp(600, 16_000) + 140;
                let mut fits = false;
                for _ in 0..5 {
                    b.call(
                        "POST",
                        "/window/rect",
                        Some(json!({"width": width, "height": tall})),
                    );
                    let frame = b.find("iframe#crm");
                    b.call("POST", "/frame", Some(json!({"id": {ELEMENT: frame}})));
                    let short = b.call(
                        "POST",
                        "/execute/sync",
                        Some(json!({"script": "const r = document.documentElement; return r.scrollHeight - r.clientHeight;", "args": []})),
                    );
                    b.call("POST", "/frame/parent", Some(json!({})));
                    let short = short.as_i64().unwrap_or(0);
                    if short <= 0 {
                        fits = true;
                        break;
                    }
                    tall += short as u64 + 20;
                }
                assert!(fits, "{lang} at {width} px: the shot holds the whole page ({tall} px)");
                let png = b.call("GET", "/screenshot", None);
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(png.as_str().unwrap())
                    .unwrap();
                assert!(bytes.starts_with(b"\x89PNG"));
                std::fs::write(artifacts.join(format!("settings-{lang}-{width}.png")), bytes)
                    .unwrap();
            }
            problems
        })
        .await
        .unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
