//! The Russian settings page with every card filled, its refusals and its error pages
//! (and the operator's page `/`) carry no English text of the catalogue: every English
//! text of `assets/i18n/en.toml` whose Russian differs is looked for in the visible text.

use crate::delivery::add;
use crate::fake_flowlu::Reply;
use crate::flowlu_support::{Ctx, notice_of};
use crate::harness::{Resp, eventually};

/// The English texts a Russian page must not show: each catalogue text (its pieces
/// between `{placeholders}`) that differs from its Russian and that Russian does not
/// use itself (names such as "Flowlu" or "AMI").
fn english_texts() -> Vec<String> {
    let en = appliance::http::settings::texts("en");
    let ru = appliance::http::settings::texts("ru");
    let all_ru: String = ru.values().cloned().collect::<Vec<_>>().join("\n");
    let mut out = Vec::new();
    for (key, text) in en {
        if ru.get(key) == Some(text) {
            continue;
        }
        for piece in text.split(['{', '}']).step_by(2) {
            let piece = piece.trim_matches(|c: char| !c.is_alphanumeric());
            if piece.chars().filter(|c| c.is_ascii_alphabetic()).count() < 2
                || has_phrase(&all_ru, piece)
            {
                continue;
            }
            out.push(piece.to_string());
        }
    }
    assert!(out.len() > 200, "{}", out.len());
    out
}

/// `needle` in `hay` with no letter right before or after it.
fn has_phrase(hay: &str, needle: &str) -> bool {
    let letter = |c: Option<char>| c.is_some_and(char::is_alphabetic);
    hay.match_indices(needle).any(|(i, _)| {
        !letter(hay[..i].chars().next_back()) && !letter(hay[i + needle.len()..].chars().next())
    })
}

/// A page's visible text: no tags or attributes, no `<code>` (ids, URLs, secrets) and
/// no element marked `lang="en"` (the PBX's own messages), entities decoded.
fn visible(html: &str) -> String {
    let mut html = html.to_string();
    for (open, close) in [("<code", "</code>"), ("<span lang=\"en\"", "</span>")] {
        while let Some(start) = html.find(open) {
            let end = html[start..]
                .find(close)
                .map_or(html.len(), |e| start + e + close.len());
            html.replace_range(start..end, " ");
        }
    }
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn assert_russian(what: &str, page: &Resp, english: &[String]) {
    assert!(
        page.body.contains("<html lang=\"ru\">"),
        "{what}: {}",
        page.body
    );
    let text = visible(&page.body);
    let left: Vec<&String> = english.iter().filter(|e| has_phrase(&text, e)).collect();
    assert!(left.is_empty(), "{what} shows English {left:?}:\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_russian_pages_show_no_english_text_of_the_catalogue() {
    let english = english_texts();
    let (r, id, hook, _dir, _pbx) =
        crate::settings_history::owner_with_records(&["sip-inbound-missed"], |c| {
            c.callbacks.allow_http_loopback = true;
        })
        .await;
    r.app.admit("other.flowlu.com");
    let mut ctx = Ctx::new("acc-1", "acme.flowlu.com", "tok-1");
    ctx.language = "ru".into();
    let s = r.session(&ctx).await;
    let act = async |action: &str, fields: &[(&str, &str)]| {
        let mut all = vec![("lang", "ru")];
        all.extend_from_slice(fields);
        r.act(action, &s, &all).await
    };

    // Fill every card: a failed and a delivered event, a callback, the CRM webhook,
    // the click-to-call URL, an import.
    r.fake.queue_reply(&hook, Reply::status(422));
    add(&r, id, "c-failed", "call.completed", 1);
    add(&r, id, "c-ok", "call.init", 1);
    eventually(20, "one failed, one delivered", async || {
        (r.count("SELECT count(*) FROM outbox WHERE state = 'failed'") == 1
            && r.count("SELECT count(*) FROM outbox WHERE state = 'delivered'") == 1)
            .then_some(())
    })
    .await;
    let mut pages = Vec::new();
    for (action, fields) in [
        ("callback-add", vec![("url", "http://127.0.0.1:9/cb")]),
        ("crm", vec![("entity_hooks", "1")]),
        ("c2c", vec![("enabled", "on")]),
        ("history-import", vec![("days", "7")]),
        ("history-status", vec![]),
        (
            "pbx-test",
            vec![
                ("pbx_type", "asterisk"),
                ("pbx_host", "127.0.0.1"),
                ("pbx_port", "9"),
                ("pbx_user", "u"),
                ("pbx_secret", "x"),
            ],
        ),
        // Every refusal the forms give.
        (
            "calls",
            vec![
                ("default_line", "a b"),
                ("default_country_code", "7"),
                ("incoming_routing", "pbx"),
            ],
        ),
        (
            "calls",
            vec![
                ("default_line", ""),
                ("default_country_code", "999"),
                ("incoming_routing", "pbx"),
            ],
        ),
        (
            "calls",
            vec![
                ("default_country_code", "7"),
                ("record_calls", "maybe"),
                ("incoming_routing", "pbx"),
            ],
        ),
        (
            "calls",
            vec![
                ("default_country_code", "7"),
                ("incoming_routing", "nobody"),
            ],
        ),
        ("connect", vec![("channel_name", &"x".repeat(101))]),
        ("mapping", vec![("ext[17]", "1 0 1")]),
        ("mapping", vec![("new_user_id", "a b")]),
        (
            "mapping",
            vec![("new_user_id", "u9"), ("new_user_name", &"n".repeat(101))],
        ),
        ("mapping", vec![("new_extension", "300")]),
        ("mapping", vec![("ext[17]", "100"), ("ext[18]", "100")]),
        ("mapping", vec![("ext[99]", "300")]),
        ("crm", vec![("task_due_minutes", "99999")]),
        ("crm", vec![("default_user_id", "abc")]),
        ("crm", vec![("missed_task", "maybe")]),
        ("c2c", vec![("enabled", "maybe")]),
        ("pbx", vec![("pbx_type", "cisco")]),
        ("pbx", vec![("pbx_type", "asterisk"), ("pbx_host", "a b")]),
        (
            "pbx",
            vec![
                ("pbx_type", "asterisk"),
                ("pbx_host", "h"),
                ("pbx_port", "70000"),
            ],
        ),
        (
            "pbx",
            vec![
                ("pbx_type", "asterisk"),
                ("pbx_host", "h"),
                ("pbx_user", ""),
            ],
        ),
        (
            "pbx",
            vec![
                ("pbx_type", "asterisk"),
                ("pbx_host", "h"),
                ("pbx_user", "u"),
                ("pbx_secret", ""),
            ],
        ),
        (
            "pbx",
            vec![
                ("pbx_type", "asterisk"),
                ("pbx_host", "h"),
                ("pbx_user", "u"),
                ("pbx_secret", "x"),
            ],
        ),
        ("history-import", vec![("days", "3")]),
        ("history-import", vec![("days", "7")]),
        ("events-resend", vec![("event", "x")]),
        ("accounts-admit", vec![("domain", "not a domain")]),
    ] {
        let page = act(action, &fields).await;
        assert!(
            notice_of(&page.body).is_some(),
            "{action} {fields:?}: {}",
            page.body
        );
        pages.push((format!("{action} {fields:?}"), page));
    }
    // The settings page itself, with every card open, as Flowlu opens it.
    let page = r.open(&ctx).await;
    assert_eq!(page.status, 200);
    for card in [
        "channel",
        "calls",
        "pbx",
        "accounts",
        "mapping",
        "crm",
        "events",
        "history",
        "callbacks",
        "c2c",
    ] {
        assert!(
            page.body.contains(&format!("class=\"card\" id=\"{card}\"")),
            "{card}"
        );
    }
    assert!(page.body.contains("id=\"events-failures\""));
    assert!(page.body.contains("id=\"c2c-url\""));
    pages.push(("the page".into(), page));
    // Needs reconnecting, and disconnected.
    r.app
        .db()
        .execute(
            "UPDATE flowlu_integrations SET needs_reconnect = 1, reconnect_reason = NULL",
            [],
        )
        .unwrap();
    pages.push(("disconnect".into(), act("disconnect", &[]).await));

    // The error pages.
    let forged = r
        .post_form(
            "/integration/settings/calls",
            &[("session", "v1.forged"), ("lang", "ru")],
        )
        .await;
    assert_eq!(forged.status, 403);
    pages.push(("403".into(), forged));
    let mut bad = ctx.clone();
    bad.domain = "acme.evil.com".into();
    pages.push(("422 domain".into(), r.open(&bad).await));
    let mut stranger = ctx.clone();
    stranger.token = "unknown".into();
    pages.push(("401".into(), r.open(&stranger).await));
    let ru = [("accept", "text/html"), ("accept-language", "ru")];
    for path in ["/integration/settings", "/integration/settings?token=x"] {
        let page = r.app.request("GET", path, &ru, None).await;
        assert_eq!(page.status, 403);
        pages.push((path.into(), page));
    }
    let page = crate::settings_page::unreadable_in_russian(&r).await;
    assert_eq!(page.status, 400);
    pages.push(("400".into(), page));
    r.fake
        .add_user_at("tok-s", "stranger.flowlu.com", "5", "Sam");
    let mut stranger = Ctx::new("555", "stranger.flowlu.com", "tok-s");
    stranger.language = "ru".into();
    let refused = r.open(&stranger).await;
    assert_eq!(refused.status, 403);
    pages.push(("not admitted".into(), refused));
    // The operator's page.
    let index = r.app.request("GET", "/", &ru, None).await;
    assert!(index.body.contains("id=\"framing-"), "{}", index.body);
    pages.push(("/".into(), index));

    for (what, page) in &pages {
        assert_russian(what, page, &english);
    }
}
