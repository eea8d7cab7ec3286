use super::*;
use crate::secret::random_token;

/// Tokens made as the appliance makes them: webhook and entity-hook secrets and
/// recording tokens (32 bytes), callback signing secrets, click-to-call keys (24 bytes).
/// (A run as short as 16 characters is all of one case with odds of about 4 in a million,
/// so the appliance makes no secret shorter than 24 bytes.)
fn tokens() -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..200 {
        out.push(random_token(32));
        out.push(format!("whsec_{}", random_token(32)));
        out.push(random_token(24));
    }
    out
}

fn percent_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[test]
fn every_token_the_appliance_makes_looks_secret() {
    for t in tokens() {
        assert!(looks_secret(&t), "{t}");
    }
    // Flowlu's telephony uuids (its event hook URL is a capability too).
    assert!(looks_secret("550e8400-e29b-41d4-a716-446655440000"));
}

#[test]
fn words_ids_numbers_and_short_things_stay_readable() {
    for plain in [
        "",
        "healthz",
        "flowlu-entities",
        "integration",
        "settings",
        "settings_action",
        "crm-rotate",
        "123456789012345678901234",
        "79161234567",
        "abcDEF123",
        "app.css",
        "sip-inbound-answered",
    ] {
        assert!(!looks_secret(plain), "{plain}");
    }
    assert_eq!(redact_path("/healthz", None), "/healthz");
    assert_eq!(
        redact_path("/integration/settings/crm-rotate", None),
        "/integration/settings/crm-rotate"
    );
    assert_eq!(
        redact_path("/hooks/flowlu/12/short", Some("a=1&agent=5&to=79161234567")),
        "/hooks/flowlu/12/short?a=1&agent=5&to=79161234567"
    );
}

#[test]
fn secrets_are_masked_wherever_the_path_puts_them() {
    for t in tokens() {
        for (path, shown) in [
            (format!("/hooks/flowlu/1/{t}"), "/hooks/flowlu/1/***"),
            (format!("/hooks/flowlu/1//{t}"), "/hooks/flowlu/1//***"),
            (format!("/hooks/flowlu/1/x/{t}"), "/hooks/flowlu/1/x/***"),
            (format!("/hooks//flowlu/1/{t}"), "/hooks//flowlu/1/***"),
            (format!("/HOOKS/flowlu/1/{t}"), "/HOOKS/flowlu/1/***"),
            (
                format!("/hooks/flowlu-entities/1/{t}"),
                "/hooks/flowlu-entities/1/***",
            ),
            (format!("/recordings/{t}"), "/recordings/***"),
            (format!("/recordings/x/{t}"), "/recordings/x/***"),
            (format!("/{t}/hooks"), "/***/hooks"),
            (format!("/recordings/{t}.wav"), "/recordings/***"),
            (
                format!("/hooks/flowlu/1/{}", percent_all(&t)),
                "/hooks/flowlu/1/***",
            ),
            (
                format!("/hooks/flowlu/1/{}", percent_all(&t).replace('%', "%25")),
                "/hooks/flowlu/1/***",
            ),
        ] {
            let logged = redact_path(&path, None);
            assert_eq!(logged, shown, "{path}");
            assert!(!logged.contains(&t));
        }
    }
}

#[test]
fn query_values_are_masked_by_key_name_however_spelled_and_by_what_they_are() {
    let short = "K3Y"; // a value too short to be caught by what it is
    for (query, shown) in [
        (
            "agent=5&to=123&key=K3Y&Token=t",
            "agent=5&to=123&key=***&Token=***",
        ),
        (
            "k%65y=K3Y&%6B%65%79=K3Y&keys=x",
            "k%65y=***&%6B%65%79=***&keys=***",
        ),
        ("key+=K3Y", "key+=***"),
        ("+key=K3Y", "+key=***"),
        ("KEY=K3Y", "KEY=***"),
        ("k%2565y=K3Y", "k%2565y=***"),
        ("api_key=K3Y;x=1", "api_key=***;x=1"),
        ("x=1;key=K3Y", "x=1;key=***"),
        (
            "access_token=K3Y&refresh-token=K3Y",
            "access_token=***&refresh-token=***",
        ),
        ("key%3DK3Y", "***"),
        ("key%253DK3Y", "***"),
        ("key", "key"),
        ("page=2&sort=name", "page=2&sort=name"),
    ] {
        let logged = redact_path("/c2c", Some(query));
        assert_eq!(logged, format!("/c2c?{shown}"), "{query}");
        if query != "key" {
            assert!(!logged.contains(short), "{query}: {logged}");
        }
    }
    for t in tokens() {
        for query in [
            format!("x={t}"),
            format!("x=1&{t}"),
            format!("{t}=1"),
            format!("x={}", percent_all(&t)),
            format!("key%3D{t}"),
            format!("key+{t}=1"),
        ] {
            let logged = redact_path("/c2c", Some(&query));
            assert!(!logged.contains(&t), "{query}: {logged}");
        }
    }
}

#[test]
fn urls_and_messages_lose_their_secrets() {
    let t = random_token(32);
    assert_eq!(
        redact_url(&format!(
            "https://u:p@hooks.example:8443/a/{t}/b?sig=1&q=ok#frag"
        )),
        "https://***@hooks.example:8443/a/***/b?sig=1&q=ok"
    );
    assert_eq!(
        redact_url(&format!("https://h.example/p?token={}&x=1", "abc")),
        "https://h.example/p?token=***&x=1"
    );
    let message = format!(
        "POST acme.flowlu.com/api/x?filter[phone]=%2B7916&key=abc: io error for url (https://h/{t}) at {}",
        percent_all(&t)
    );
    let logged = redact_text(&message);
    assert!(!logged.contains(&t), "{logged}");
    assert!(!logged.contains("key=abc"), "{logged}");
    assert!(
        logged.starts_with("POST acme.flowlu.com/api/x?filter[phone]=%2B7916&key=***"),
        "{logged}"
    );
    assert!(logged.contains("(https://h/***)"), "{logged}");
    assert_eq!(redact_text("connection refused"), "connection refused");
}
