//! Shared pieces for the Flowlu tests: an appliance wired to a fake Flowlu, iframe
//! contexts in every encoding Flowlu may use, and form posting.

#![allow(dead_code)]

use appliance::config::Config;
use serde_json::{Value, json};

use crate::fake_flowlu::FakeFlowlu;
use crate::harness::{Resp, TestApp};

pub const PUBLIC_URL: &str = "https://appliance.example:8443";

pub struct Rig {
    pub app: TestApp,
    pub fake: FakeFlowlu,
}

/// An appliance whose Flowlu calls go to a fresh fake, with a public URL set.
pub async fn rig(edit: impl FnOnce(&mut Config)) -> Rig {
    let fake = FakeFlowlu::start().await;
    let base = fake.base.clone();
    let app = TestApp::start_with(|c| {
        c.flowlu.base_url_override = base;
        c.server.public_url = PUBLIC_URL.into();
        c.flowlu.request_timeout_secs = 2;
        edit(c);
    })
    .await;
    Rig { app, fake }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, `secs` from now.
pub fn crm_time(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]"
    ))
    .unwrap()
}

/// One iframe context, as Flowlu would POST it.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub domain: String,
    pub account: String,
    pub app_id: String,
    pub version: String,
    pub placement: String,
    pub token: String,
    pub refresh: String,
    pub expires_at: String,
    pub language: String,
    pub https: String,
}

impl Ctx {
    pub fn new(account: &str, domain: &str, token: &str) -> Ctx {
        Ctx {
            domain: domain.into(),
            account: account.into(),
            app_id: "miniapp-1".into(),
            version: "1.0.0".into(),
            placement: "placement-9".into(),
            token: token.into(),
            refresh: format!("r-{token}"),
            expires_at: crm_time(2 * 3600),
            language: "en".into(),
            https: "1".into(),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "domain": self.domain,
            "language": self.language,
            "placement": {"id": self.placement, "code": "contactcenter.service.wizard"},
            "https": self.https,
            "account": {"id": self.account},
            "app": {"id": self.app_id, "version": self.version},
            "auth": {
                "expires_at": self.expires_at,
                "access_token": self.token,
                "refresh_token": self.refresh,
            },
            "ratelimit": {"limit": "16"},
        })
    }

    /// Form fields with `a[b]` (or, with `dotted`, `a.b`) keys.
    pub fn fields(&self, dotted: bool) -> Vec<(String, String)> {
        let key = |a: &str, b: &str| {
            if dotted {
                format!("{a}.{b}")
            } else {
                format!("{a}[{b}]")
            }
        };
        vec![
            ("domain".into(), self.domain.clone()),
            ("language".into(), self.language.clone()),
            (key("placement", "id"), self.placement.clone()),
            (
                key("placement", "code"),
                "contactcenter.service.wizard".into(),
            ),
            ("https".into(), self.https.clone()),
            (key("account", "id"), self.account.clone()),
            (key("app", "id"), self.app_id.clone()),
            (key("app", "version"), self.version.clone()),
            (key("auth", "expires_at"), self.expires_at.clone()),
            (key("auth", "access_token"), self.token.clone()),
            (key("auth", "refresh_token"), self.refresh.clone()),
            (key("ratelimit", "limit"), "16".into()),
        ]
    }
}

pub fn urlencode(fields: &[(String, String)]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter())
        .finish()
        .into_bytes()
}

pub const BOUNDARY: &str = "----appliance-test-7MA4YWxkTrZu0gW";

pub fn multipart(fields: &[(String, String)]) -> Vec<u8> {
    let mut out = String::new();
    for (k, v) in fields {
        out.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    out.push_str(&format!("--{BOUNDARY}--\r\n"));
    out.into_bytes()
}

impl Rig {
    /// POSTs `ctx` to the iframe endpoint as JSON.
    pub async fn open(&self, ctx: &Ctx) -> Resp {
        self.post_json("/integration/settings", &ctx.json()).await
    }

    /// Opens the settings page and returns its session token (asserting a 200).
    pub async fn session(&self, ctx: &Ctx) -> String {
        let page = self.open(ctx).await;
        assert_eq!(page.status, 200, "{}", page.body);
        session_of(&page.body)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.app
            .request(
                "POST",
                path,
                &[
                    ("content-type", "application/json"),
                    ("accept", "text/html"),
                ],
                Some(body.to_string().into_bytes()),
            )
            .await
    }

    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let owned: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.app
            .request(
                "POST",
                path,
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("accept", "text/html"),
                ],
                Some(urlencode(&owned)),
            )
            .await
    }

    /// POSTs a settings form (`/integration/settings/<action>`) with `session`.
    pub async fn act(&self, action: &str, session: &str, fields: &[(&str, &str)]) -> Resp {
        let mut all = vec![("session", session)];
        all.extend_from_slice(fields);
        self.post_form(&format!("/integration/settings/{action}"), &all)
            .await
    }

    /// One integer from the database.
    pub fn count(&self, sql: &str) -> i64 {
        self.app.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    pub fn integration_id(&self, account: &str) -> i64 {
        self.app
            .db()
            .query_row(
                "SELECT id FROM flowlu_integrations WHERE account_id = ?1",
                [account],
                |r| r.get(0),
            )
            .unwrap()
    }
}

/// The hidden `session` field of a settings page.
pub fn session_of(page: &str) -> String {
    hidden_field(page, "session")
}

/// The value of the page's (first) field called `name`.
pub fn hidden_field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {page}"))
        + marker.len();
    let end = page[start..].find('"').unwrap() + start;
    page[start..end].to_string()
}

/// The text of the page's notice, if any.
pub fn notice_of(page: &str) -> Option<String> {
    let start = page.find("id=\"notice\"")?;
    let text_start = page[start..].find('>')? + start + 1;
    let end = page[text_start..].find("</p>")? + text_start;
    Some(page[text_start..end].to_string())
}
