//! The settings page's forms: sessions, Connect/Disconnect, call settings, the PBX
//! connection and its owner, the extension mapping, and isolation between accounts.

use serde_json::json;

use crate::fake_flowlu::{Reply, TELEPHONY_CREATE};
use crate::flowlu_support::{Ctx, PUBLIC_URL, Rig, notice_of, rig};

/// Opens the page for account `account` as user `user` and returns the session.
async fn open_as(r: &Rig, account: &str, domain: &str, token: &str, user: &str) -> String {
    r.fake.add_user(token, user, &format!("User {user}"), "");
    r.session(&Ctx::new(account, domain, token)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_registers_the_channel_once_and_disconnect_forgets_it() {
    let r = rig(|_| {}).await;
    let s = open_as(&r, "100", "acme.flowlu.com", "tok-a", "7").await;
    let id = r.integration_id("100");
    let page = r
        .act("connect", &s, &[("channel_name", "Office PBX")])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("fake-uuid-"), "{}", page.body);
    assert!(notice_of(&page.body).unwrap().contains("Connected"));
    let creates = r.fake.requests_to(TELEPHONY_CREATE);
    assert_eq!(creates.len(), 1);
    let create = &creates[0];
    assert_eq!(create.method, "POST");
    assert_eq!(create.header("authorization"), Some("Bearer tok-a"));
    assert!(
        create
            .header("content-type")
            .unwrap()
            .starts_with("application/x-www-form-urlencoded")
    );
    let form = create.form();
    let secret: String = r
        .app
        .db()
        .query_row(
            "SELECT webhook_secret FROM flowlu_integrations WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .unwrap();
    assert!(secret.len() >= 40, "the webhook secret must be unguessable");
    assert_eq!(form["name"], "Office PBX");
    assert_eq!(form["ref_id"], "miniapp-1");
    assert_eq!(form["code"], "mini_app");
    assert_eq!(
        form["webhook_url"],
        format!("{PUBLIC_URL}/hooks/flowlu/{id}/{secret}")
    );
    assert_eq!(form["icon_url"], format!("{PUBLIC_URL}/assets/icon.svg"));
    assert_eq!(form["can_redirect"], "1");
    assert_eq!(form["manifest_id"], "placement-9");
    assert!(
        !page.body.contains(&secret),
        "the webhook secret is not shown"
    );
    let uuid: Option<String> = r
        .app
        .db()
        .query_row(
            "SELECT telephony_uuid FROM flowlu_integrations WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .unwrap();
    let uuid = uuid.expect("uuid stored");
    assert!(page.body.contains(&uuid));

    // Connect again, and twice at once: no second channel.
    let again = r.act("connect", &s, &[]).await;
    assert_eq!(again.status, 200);
    assert!(notice_of(&again.body).unwrap().contains("already"));
    let (a, b) = tokio::join!(r.act("connect", &s, &[]), r.act("connect", &s, &[]));
    assert_eq!((a.status, b.status), (200, 200));
    assert_eq!(r.fake.count(TELEPHONY_CREATE), 1);
    let health = r.app.get("/healthz").await.json();
    assert_eq!(
        health["flowlu"],
        json!({"integrations": 1, "connected": 1, "needs_reconnect": 0})
    );

    // Disconnect forgets the uuid and the old webhook secret.
    let page = r.act("disconnect", &s, &[]).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains(&uuid));
    assert!(
        page.body
            .contains("action=\"/integration/settings/connect\"")
    );
    let (uuid_after, secret_after): (Option<String>, String) = r
        .app
        .db()
        .query_row(
            "SELECT telephony_uuid, webhook_secret FROM flowlu_integrations WHERE id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(uuid_after, None);
    assert_ne!(secret_after, secret);
    assert!(
        notice_of(&r.act("disconnect", &s, &[]).await.body)
            .unwrap()
            .contains("no registered")
    );
    // Connecting again registers a new channel with the new webhook URL.
    assert_eq!(r.act("connect", &s, &[]).await.status, 200);
    let creates = r.fake.requests_to(TELEPHONY_CREATE);
    assert_eq!(creates.len(), 2);
    assert!(creates[1].form()["webhook_url"].ends_with(&secret_after));
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_failures_are_explained_and_change_nothing() {
    let r = rig(|c| c.server.public_url = String::new()).await;
    let s = open_as(&r, "100", "acme.flowlu.com", "tok-a", "7").await;
    let page = r.act("connect", &s, &[]).await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert!(notice_of(&page.body).unwrap().contains("server.public_url"));
    assert_eq!(r.fake.count(TELEPHONY_CREATE), 0);

    let r = rig(|_| {}).await;
    let s = open_as(&r, "100", "acme.flowlu.com", "tok-a", "7").await;
    for (reply, status) in [
        (Reply::status(401), 401),
        (
            Reply::json(
                200,
                json!({"error": {"error_code": 22, "error_msg": "access denied"}}),
            ),
            401,
        ),
        (Reply::status(503), 502),
        (Reply::json(200, json!({"response": {"id": 5}})), 502),
    ] {
        r.fake.queue_reply(TELEPHONY_CREATE, reply);
        let page = r.act("connect", &s, &[]).await;
        assert_eq!(page.status, status, "{}", page.body);
        assert!(
            notice_of(&page.body)
                .unwrap()
                .contains("Could not register")
        );
        assert!(!page.body.contains("tok-a"));
    }
    assert_eq!(
        r.count("SELECT count(*) FROM flowlu_integrations WHERE telephony_uuid IS NOT NULL"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_need_a_valid_session() {
    let r = rig(|_| {}).await;
    let s = open_as(&r, "100", "acme.flowlu.com", "tok-a", "7").await;
    let fields = [("default_line", "100"), ("incoming_routing", "pbx")];
    let before = r.fake.requests().len();
    // No session, junk, a token of another appliance, a tampered integration id.
    let other_key = {
        let other = rig(|_| {}).await;
        open_as(&other, "100", "acme.flowlu.com", "tok-a", "7").await
    };
    let (payload, tag) = s.rsplit_once('.').unwrap();
    let mut parts: Vec<&str> = payload.split('.').collect();
    parts[1] = "2";
    let tampered = format!("{}.{tag}", parts.join("."));
    for bad in [
        "",
        "junk",
        "v1.1.99999999999.Nw.AAAA",
        other_key.as_str(),
        tampered.as_str(),
    ] {
        let resp = r.act("calls", bad, &fields).await;
        assert_eq!(resp.status, 403, "{bad}: {}", resp.body);
        assert!(
            resp.body.contains("open the settings again in Flowlu"),
            "{}",
            resp.body
        );
    }
    let resp = r
        .post_form(
            "/integration/settings/calls",
            &[("default_line", "100"), ("incoming_routing", "pbx")],
        )
        .await;
    assert_eq!(resp.status, 403);
    assert_eq!(r.count("SELECT count(*) FROM flowlu_settings"), 0);
    // JSON is not a form: 415. Unknown action: 404. GET: 405.
    let resp = r
        .post_json("/integration/settings/calls", &json!({"session": s}))
        .await;
    assert_eq!(resp.status, 415);
    assert_eq!(r.act("nope", &s, &[]).await.status, 404);
    let resp = r
        .app
        .request("GET", "/integration/settings/calls", &[], None)
        .await;
    assert_eq!(resp.status, 405);
    assert_eq!(r.fake.requests().len(), before);
    // The valid session works.
    assert_eq!(r.act("calls", &s, &fields).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_sessions_are_refused() {
    let r = rig(|c| c.flowlu.session_minutes = 1).await;
    let s = open_as(&r, "100", "acme.flowlu.com", "tok-a", "7").await;
    // Re-sign the same session with an expiry in the past, using the appliance's key.
    let key = r.app.state.flowlu.session_key().to_vec();
    let id = r.integration_id("100");
    let past = appliance::http::settings::session::sign(&key, id, "7", 1);
    assert_eq!(
        r.act("calls", &past, &[("incoming_routing", "pbx")])
            .await
            .status,
        403
    );
    let resp = r.act("calls", &past, &[("incoming_routing", "pbx")]).await;
    assert!(resp.body.contains("expired"), "{}", resp.body);
    assert_eq!(
        r.act("calls", &s, &[("incoming_routing", "pbx")])
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn call_settings_are_validated_and_saved() {
    let r = rig(|_| {}).await;
    let s = open_as(&r, "100", "acme.flowlu.com", "tok-a", "7").await;
    for (fields, needle) in [
        (
            vec![("default_line", "1 2"), ("incoming_routing", "pbx")],
            "default line",
        ),
        (
            vec![
                ("default_country_code", "1234"),
                ("incoming_routing", "pbx"),
            ],
            "country",
        ),
        (
            vec![("default_country_code", "x"), ("incoming_routing", "pbx")],
            "country",
        ),
        (vec![("incoming_routing", "magic")], "incoming routing"),
        (
            vec![("record_calls", "maybe"), ("incoming_routing", "pbx")],
            "record_calls",
        ),
    ] {
        let resp = r.act("calls", &s, &fields).await;
        assert_eq!(resp.status, 422, "{fields:?}");
        assert!(
            notice_of(&resp.body).unwrap().contains(needle),
            "{}",
            resp.body
        );
    }
    assert_eq!(r.count("SELECT count(*) FROM flowlu_settings"), 0);
    let resp = r
        .act(
            "calls",
            &s,
            &[
                ("default_line", "+74951234567"),
                ("default_country_code", "+7"),
                ("record_calls", "1"),
                ("incoming_routing", "crm"),
            ],
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(resp.body.contains("value=\"+74951234567\""));
    assert!(resp.body.contains("value=\"7\""));
    assert!(
        resp.body
            .contains("name=\"record_calls\" value=\"1\" checked")
    );
    assert!(
        resp.body
            .contains("name=\"incoming_routing\" value=\"crm\" checked>")
    );
    let id = r.integration_id("100");
    let row: (String, String, i64, String) = r
        .app
        .db()
        .query_row(
            "SELECT default_line, default_country_code, record_calls, incoming_routing
             FROM flowlu_settings WHERE integration_id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .unwrap();
    assert_eq!(row, ("+74951234567".into(), "7".into(), 1, "crm".into()));
    // Unchecking the box (absent field) turns recording off.
    r.act("calls", &s, &[("incoming_routing", "pbx")]).await;
    assert_eq!(r.count("SELECT record_calls FROM flowlu_settings"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_extension_mapping_lists_visitors_and_takes_additions() {
    let r = rig(|_| {}).await;
    let s = open_as(&r, "100", "acme.flowlu.com", "tok-a", "7").await;
    let _ = open_as(&r, "100", "acme.flowlu.com", "tok-b", "8").await;
    let page = r
        .act("mapping", &s, &[("ext[7]", "101"), ("ext[8]", "")])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("name=\"ext[8]\""), "visitors are listed");
    assert!(
        page.body
            .contains("name=\"ext[7]\" list=\"pbx-extensions\" maxlength=\"32\" value=\"101\"")
    );
    // Add a manager who never opened the page, and swap extensions in one go.
    let page = r
        .act(
            "mapping",
            &s,
            &[
                ("ext[7]", "102"),
                ("ext[8]", "101"),
                ("new_user_id", "42"),
                ("new_user_name", "Carol"),
                ("new_extension", "103"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Carol"));
    let id = r.integration_id("100");
    let state = r.app.state.clone();
    let mapping = state
        .db
        .run(move |c| appliance::flowlu::store::mappings(c, id))
        .await
        .unwrap();
    assert_eq!(
        mapping,
        [
            ("8".to_string(), "101".to_string()),
            ("7".to_string(), "102".to_string()),
            ("42".to_string(), "103".to_string())
        ]
    );
    // Refusals: a duplicate, an extension held by someone not in the form, bad text.
    for (fields, needle) in [
        (vec![("ext[7]", "200"), ("ext[8]", "200")], "two employees"),
        (vec![("ext[7]", "103")], "already belongs"),
        (vec![("ext[7]", "1 0")], "not an extension"),
        (vec![("new_extension", "300")], "user ID"),
        (vec![("new_user_id", "a b")], "user ID"),
    ] {
        let resp = r.act("mapping", &s, &fields).await;
        assert_eq!(resp.status, 422, "{fields:?}: {}", resp.body);
        assert!(
            notice_of(&resp.body).unwrap().contains(needle),
            "{}",
            resp.body
        );
    }
    let unchanged = state
        .db
        .run(move |c| appliance::flowlu::store::mappings(c, id))
        .await
        .unwrap();
    assert_eq!(unchanged, mapping);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_account_cannot_touch_another() {
    let r = rig(|_| {}).await;
    let a = open_as(&r, "100", "alpha.flowlu.com", "tok-a", "7").await;
    let b = open_as(&r, "200", "beta.flowlu.com", "tok-b", "9").await;
    let (ida, idb) = (r.integration_id("100"), r.integration_id("200"));
    assert_eq!(r.act("mapping", &b, &[("ext[9]", "201")]).await.status, 200);
    assert_eq!(
        r.act(
            "calls",
            &b,
            &[("default_line", "B-LINE"), ("incoming_routing", "crm")]
        )
        .await
        .status,
        200
    );
    // A's session naming B's user: refused, B untouched.
    let resp = r.act("mapping", &a, &[("ext[9]", "999")]).await;
    assert_eq!(resp.status, 422, "{}", resp.body);
    assert!(notice_of(&resp.body).unwrap().contains("not an employee"));
    // A's pages never show B's data.
    let page = r.act("calls", &a, &[("incoming_routing", "pbx")]).await;
    assert!(!page.body.contains("B-LINE") && !page.body.contains("User 9"));
    assert!(page.body.contains("alpha.flowlu.com") && !page.body.contains("beta.flowlu.com"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors https://alpha.flowlu.com") && !csp.contains("beta"));
    // A's session re-signed for B's integration id without the key: refused.
    let (payload, tag) = a.rsplit_once('.').unwrap();
    let forged = format!(
        "{}.{tag}",
        payload.replacen(&format!(".{ida}."), &format!(".{idb}."), 1)
    );
    assert_eq!(
        r.act("mapping", &forged, &[("ext[9]", "999")]).await.status,
        403
    );
    let b_state = r.app.state.clone();
    let b_ext = b_state
        .db
        .run(move |c| appliance::flowlu::store::extension_for_user(c, idb, "9"))
        .await
        .unwrap();
    assert_eq!(b_ext.as_deref(), Some("201"));
    let b_line: String = r
        .app
        .db()
        .query_row(
            "SELECT default_line FROM flowlu_settings WHERE integration_id = ?1",
            [idb],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(b_line, "B-LINE");
    // Connect and Disconnect with A's session act on A only.
    assert_eq!(r.act("connect", &b, &[]).await.status, 200);
    assert_eq!(r.act("disconnect", &a, &[]).await.status, 200);
    assert_eq!(
        r.count(&format!(
            "SELECT count(*) FROM flowlu_integrations WHERE id = {idb} AND telephony_uuid IS NOT NULL"
        )),
        1
    );
    let page = r.act("connect", &a, &[]).await;
    let create = r.fake.requests_to(TELEPHONY_CREATE).pop().unwrap();
    assert_eq!(create.header("authorization"), Some("Bearer tok-a"));
    assert!(create.form()["webhook_url"].contains(&format!("/hooks/flowlu/{ida}/")));
    assert_eq!(page.status, 200);
}
