//! Flowlu's entity webhooks (issue 8 part 3) through the whole appliance: switched on from
//! the settings page, authenticated by the secret in the path, and keeping the contact
//! cache right under duplicates, reordering and deletes.

use serde_json::{Value, json};

use crate::flowlu_support::{Ctx, PUBLIC_URL, Rig, notice_of, rig};
use crate::harness::Resp;

/// A connected account with the entity hooks on; returns its id and the webhook path.
pub async fn hooks_on(r: &Rig, extra: &[(&str, &str)]) -> (i64, String, String) {
    r.fake.add_user("tok-1", "17", "Ann", "ann@example.com");
    let s = r
        .session(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1"))
        .await;
    let id = r.integration_id("acc-1");
    let page = r.open(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1")).await;
    assert!(page.body.contains("id=\"crm\""), "the section is shown");
    assert!(
        !page.body.contains("crm-hook-url"),
        "off by default: no URL"
    );
    let mut fields = vec![("entity_hooks", "1")];
    fields.extend_from_slice(extra);
    let saved = r.act("crm", &s, &fields).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let notice = notice_of(&saved.body).unwrap().replace("&#x2f;", "/");
    let prefix = format!("{PUBLIC_URL}/hooks/flowlu-entities/{id}/");
    let at = notice.find(&prefix).expect("the full URL, once") + prefix.len();
    let secret: String = notice[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(secret.len() >= 40, "{notice}");
    // Afterwards the page shows it masked only.
    let again = r.open(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1")).await;
    assert!(again.body.contains("crm-hook-url"));
    assert!(
        !again.body.contains(&secret),
        "the secret is not on the page"
    );
    (id, format!("/hooks/flowlu-entities/{id}/{secret}"), s)
}

pub async fn post(r: &Rig, path: &str, body: &Value) -> Resp {
    r.app
        .request(
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await
}

pub fn account(action: &str, id: i64, owner: &str, phone: &str, updated: &str) -> Value {
    let entity = json!({"id": id, "type": 2, "name": format!("Contact {id}"),
                        "owner_id": owner, "phone": phone, "phone2": "", "phone3": "",
                        "updated_date": updated});
    match action {
        "delete" => json!({"meta": {"module": "crm", "model": "account", "action": "delete"},
                           "current": null, "previous": entity}),
        _ => json!({"meta": {"module": "crm", "model": "account", "action": action},
                    "current": entity, "previous": null}),
    }
}

fn manager_of(r: &Rig, id: i64, phone: &str) -> Option<String> {
    r.app
        .db()
        .query_row(
            "SELECT c.manager_id FROM crm_contact_phones p
             JOIN crm_contacts c USING (integration_id, contact_id)
             WHERE p.integration_id = ?1 AND p.phone = ?2 AND c.deleted = 0",
            rusqlite::params![id, phone],
            |row| row.get(0),
        )
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_reordering_and_deletes_keep_the_cache_right() {
    let r = rig(|_| {}).await;
    let (id, hook, _) = hooks_on(&r, &[]).await;
    let number = "79161234567";
    let status = |resp: &Resp| resp.json()["status"].as_str().unwrap_or("").to_string();

    let create = account(
        "create",
        501,
        "17",
        "+7 (916) 765-43-21",
        "2026-11-23 10:00:00",
    );
    let first = post(&r, &hook, &create).await;
    assert_eq!(
        (first.status, status(&first)),
        (200, "stored".into()),
        "{}",
        first.body
    );
    // Stored normalized (E.164 digits without the `+`).
    assert_eq!(manager_of(&r, id, "79167654321").as_deref(), Some("17"));

    // The same delivery twice, then a newer update, then the older one late.
    let dup = post(&r, &hook, &create).await;
    assert_eq!((dup.status, status(&dup)), (200, "stale".into()));
    let newer = account(
        "update",
        501,
        "18",
        "+7 916 123-45-67",
        "2026-11-23 10:05:00",
    );
    assert_eq!(status(&post(&r, &hook, &newer).await), "stored");
    let older = account(
        "update",
        501,
        "19",
        "+7 916 123-45-67",
        "2026-11-23 10:01:00",
    );
    assert_eq!(status(&post(&r, &hook, &older).await), "stale");
    assert_eq!(manager_of(&r, id, number).as_deref(), Some("18"));
    assert_eq!(
        manager_of(&r, id, "79167654321"),
        None,
        "the old number is gone"
    );

    // Deleted: a later (even newer) update does not bring it back.
    let delete = account(
        "delete",
        501,
        "18",
        "+7 916 123-45-67",
        "2026-11-23 10:05:00",
    );
    assert_eq!(status(&post(&r, &hook, &delete).await), "deleted");
    assert_eq!(manager_of(&r, id, number), None);
    let late = account(
        "update",
        501,
        "20",
        "+7 916 123-45-67",
        "2026-11-23 11:00:00",
    );
    assert_eq!(status(&post(&r, &hook, &late).await), "already_deleted");
    assert_eq!(status(&post(&r, &hook, &delete).await), "already_deleted");
    assert_eq!(manager_of(&r, id, number), None);

    // Other entities are acknowledged and ignored; the page shows the cache size.
    let lead = json!({"meta": {"module": "crm", "model": "lead", "action": "create"},
                      "current": {"id": 9}, "previous": null});
    assert_eq!(status(&post(&r, &hook, &lead).await), "ignored");
    assert_eq!(
        status(
            &post(
                &r,
                &hook,
                &account("create", 502, "17", "+44 20 7946 0000", "")
            )
            .await
        ),
        "stored"
    );
    let page = r.open(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1")).await;
    assert!(
        page.body
            .contains("<span id=\"crm-cache-contacts\">1</span>"),
        "{}",
        page.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_secrets_and_bad_payloads_are_refused_without_touching_the_cache() {
    let r = rig(|c| c.server.max_body_bytes = 4096).await;
    let (id, hook, session) = hooks_on(&r, &[]).await;
    let good = account("create", 7, "17", "+79161234567", "2026-11-23 10:00:00");
    for path in [
        format!("/hooks/flowlu-entities/{id}/wrong-secret"),
        format!(
            "/hooks/flowlu-entities/{}/{}",
            id + 1,
            hook.rsplit('/').next().unwrap()
        ),
        format!(
            "/hooks/flowlu-entities/0{id}/{}",
            hook.rsplit('/').next().unwrap()
        ),
    ] {
        assert_eq!(post(&r, &path, &good).await.status, 404, "{path}");
    }
    let raw = |body: &str, ct: &str| {
        let (hook, body, ct) = (hook.clone(), body.to_string(), ct.to_string());
        let app = &r.app;
        async move {
            app.request(
                "POST",
                &hook,
                &[("content-type", &ct)],
                Some(body.into_bytes()),
            )
            .await
        }
    };
    assert_eq!(raw("{not json", "application/json").await.status, 400);
    // A key given twice (here the account's phone, at depth two) is a 400 as well.
    let twice = raw(
        r#"{"meta": {"module": "crm", "model": "account", "action": "create"},
            "current": {"id": 7, "owner_id": "17", "phone": "+79161234567", "phone": "+79160000000"}}"#,
        "application/json",
    )
    .await;
    assert_eq!(twice.status, 400, "{}", twice.body);
    assert!(twice.body.contains("given twice"), "{}", twice.body);
    assert_eq!(
        raw("a=b", "application/x-www-form-urlencoded").await.status,
        415
    );
    for bad in [
        json!([1]),
        json!({"meta": {"module": "crm", "model": "account", "action": "explode"}}),
        json!({"meta": {"module": "crm", "model": "account", "action": "update"}, "current": null}),
        json!({"meta": {"module": "crm", "model": "account", "action": "update"},
               "current": {"id": "x1"}}),
    ] {
        let resp = post(&r, &hook, &bad).await;
        assert_eq!(resp.status, 422, "{bad}: {}", resp.body);
        assert_eq!(resp.json()["error"]["code"], "invalid_payload");
    }
    let huge = format!("{{\"meta\": \"{}\"}}", "x".repeat(5000));
    assert_eq!(raw(&huge, "application/json").await.status, 413);
    assert_eq!(r.app.request("GET", &hook, &[], None).await.status, 405);
    assert_eq!(r.count("SELECT count(*) FROM crm_contacts"), 0);

    // A new URL replaces the old one; switching the hooks off closes it.
    assert_eq!(post(&r, &hook, &good).await.status, 200);
    let rotated = r.act("crm-rotate", &session, &[]).await;
    assert_eq!(rotated.status, 200);
    assert_eq!(
        post(&r, &hook, &good).await.status,
        404,
        "the old URL is dead"
    );
    let notice = notice_of(&rotated.body).unwrap().replace("&#x2f;", "/");
    let fresh = &notice[notice.find("/hooks/flowlu-entities/").unwrap()..];
    assert_eq!(post(&r, fresh.trim(), &good).await.status, 200);
    assert_eq!(r.act("crm", &session, &[]).await.status, 200);
    assert_eq!(
        post(&r, fresh.trim(), &good).await.status,
        404,
        "off: closed"
    );
    // Invalid settings are refused.
    let bad = r.act("crm", &session, &[("task_due_minutes", "-5")]).await;
    assert_eq!(bad.status, 422);
    let bad = r.act("crm", &session, &[("default_user_id", "ann")]).await;
    assert_eq!(bad.status, 422);
}
