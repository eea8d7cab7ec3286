use super::*;
use crate::config::Config;
use crate::flowlu::context;
use crate::flowlu::domain;

fn db() -> Connection {
    let mut conn = Connection::open_in_memory().unwrap();
    conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    crate::db::migrate::migrate(&mut conn, crate::db::migrate::MIGRATIONS).unwrap();
    conn
}

fn ctx(account: &str, domain: &str, version: &str, token: &str) -> IframeContext {
    let json = format!(
        r#"{{"domain": "{domain}", "account": {{"id": "{account}"}},
            "app": {{"id": "app", "version": "{version}"}}, "placement": {{"id": "p1"}},
            "auth": {{"access_token": "{token}", "refresh_token": "r-{token}",
                      "expires_at": "2030-01-01 00:00:00"}}}}"#
    );
    context::from_json(json.as_bytes(), 0).unwrap()
}

fn integrate(conn: &Connection, c: &IframeContext) -> Integration {
    let target = domain::target(&Config::defaults().flowlu, &c.domain, c.https).unwrap();
    upsert_integration(conn, c, &target).unwrap()
}

fn store_token(conn: &Connection, i: &Integration, user: &str, c: &IframeContext) {
    let hash = crate::flowlu::tokens::fast_hash(&c.access_token, &c.domain, &c.app_version);
    upsert_token(
        conn,
        i.id,
        user,
        &c.domain,
        &c.app_version,
        &c.access_token,
        &c.refresh_token,
        c.expires_at,
        &hash,
    )
    .unwrap();
}

#[test]
fn integrations_are_keyed_by_platform_account_and_app() {
    let conn = db();
    let a = integrate(&conn, &ctx("100", "a.flowlu.com", "1.0", "t"));
    let again = integrate(&conn, &ctx("100", "renamed.flowlu.com", "1.1", "t"));
    assert_eq!(a.id, again.id);
    assert_eq!(again.domain, "renamed.flowlu.com");
    assert_eq!(again.app_version, "1.1");
    assert_eq!(
        again.webhook_secret, a.webhook_secret,
        "the secret survives updates"
    );
    // The same account id on another Flowlu platform is another account.
    let ru = integrate(&conn, &ctx("100", "a.flowlu.ru", "1.0", "t"));
    assert_ne!(ru.id, a.id);
    assert_eq!(health_counts(&conn).unwrap(), (2, 0, 0));
    assert!(
        integration_by_webhook(&conn, a.id, a.webhook_secret.expose())
            .unwrap()
            .is_some()
    );
    assert!(
        integration_by_webhook(&conn, a.id, "guess")
            .unwrap()
            .is_none()
    );
    assert!(
        integration_by_webhook(&conn, ru.id, a.webhook_secret.expose())
            .unwrap()
            .is_none()
    );
    set_telephony_uuid(&conn, a.id, Some("uuid-1")).unwrap();
    assert_eq!(health_counts(&conn).unwrap(), (2, 1, 0));
    set_telephony_uuid(&conn, a.id, None).unwrap();
    let after = integration(&conn, a.id).unwrap().unwrap();
    assert_eq!(after.telephony_uuid, None);
    assert_ne!(
        after.webhook_secret, a.webhook_secret,
        "forgetting the channel replaces the webhook secret"
    );
}

#[test]
fn tokens_replace_per_version_and_old_versions_are_removed() {
    let conn = db();
    let v1 = ctx("100", "a.flowlu.com", "1.0", "t1");
    let i = integrate(&conn, &v1);
    store_token(&conn, &i, "7", &v1);
    let v1b = ctx("100", "a.flowlu.com", "1.0", "t1b");
    store_token(&conn, &i, "7", &v1b);
    let count = |conn: &Connection| -> i64 {
        conn.query_row("SELECT count(*) FROM flowlu_tokens", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(&conn), 1, "same (user, domain, version): replaced");
    let v2 = ctx("100", "a.flowlu.com", "2.0", "t2");
    let i = integrate(&conn, &v2);
    store_token(&conn, &i, "7", &v2);
    store_token(&conn, &i, "8", &v2);
    assert_eq!(count(&conn), 3);
    assert_eq!(
        delete_other_versions(&conn, i.id, "7", "a.flowlu.com", "2.0").unwrap(),
        1
    );
    assert_eq!(count(&conn), 2);
    let hash = crate::flowlu::tokens::fast_hash(&v2.access_token, "a.flowlu.com", "2.0");
    let row = find_by_fast_hash(&conn, &hash).unwrap().unwrap();
    assert_eq!(row.access_token.expose(), "t2");
    // token_for_user follows the integration's current domain and version.
    assert_eq!(
        token_for_user(&conn, i.id, "7")
            .unwrap()
            .unwrap()
            .app_version,
        "2.0"
    );
}

#[test]
fn refresh_schedule_covers_only_the_token_in_use() {
    let conn = db();
    let c = ctx("100", "a.flowlu.com", "1.0", "t1");
    let i = integrate(&conn, &c);
    store_token(&conn, &i, "7", &c);
    store_token(&conn, &i, "8", &ctx("100", "a.flowlu.com", "1.0", "t8"));
    let far = c.expires_at + 10;
    assert!(
        due_for_refresh(&conn, far, 0).unwrap().is_empty(),
        "no token user yet"
    );
    use_token_of(&conn, i.id, "7").unwrap();
    let due = due_for_refresh(&conn, far, 0).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].user_id, "7");
    assert!(
        due_for_refresh(&conn, c.expires_at - 601, 600)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        due_for_refresh(&conn, c.expires_at - 600, 600)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(next_due(&conn, 600).unwrap(), Some(c.expires_at - 600));

    // A transient failure waits for retry_at.
    record_refresh_failure(&conn, due[0].id, Some(far + 60)).unwrap();
    assert!(due_for_refresh(&conn, far, 0).unwrap().is_empty());
    assert_eq!(due_for_refresh(&conn, far + 60, 0).unwrap().len(), 1);
    // A refusal stops retries until a fresh token arrives.
    record_refresh_failure(&conn, due[0].id, None).unwrap();
    mark_needs_reconnect(&conn, i.id, "refused").unwrap();
    assert!(due_for_refresh(&conn, far + 1000, 0).unwrap().is_empty());
    assert_eq!(health_counts(&conn).unwrap().2, 1);
    use_token_of(&conn, i.id, "7").unwrap();
    assert_eq!(health_counts(&conn).unwrap().2, 0);

    // save_refreshed only replaces the token it refreshed.
    let row = token_for_user(&conn, i.id, "7").unwrap().unwrap();
    let new = crate::secret::Secret::new("n1");
    assert!(save_refreshed(&conn, &row, &new, &new, 5, "h").unwrap());
    assert!(!save_refreshed(&conn, &row, &new, &new, 6, "h2").unwrap());
    assert_eq!(
        token_for_user(&conn, i.id, "7")
            .unwrap()
            .unwrap()
            .expires_at,
        5
    );
}

#[test]
fn mapping_is_scoped_per_integration() {
    let conn = db();
    let a = integrate(&conn, &ctx("100", "a.flowlu.com", "1.0", "t"));
    let b = integrate(&conn, &ctx("200", "b.flowlu.com", "1.0", "t"));
    upsert_seen_user(&conn, a.id, "7", "Ann", "ann@a").unwrap();
    add_user(&conn, a.id, "8", "Bob").unwrap();
    upsert_seen_user(&conn, b.id, "7", "Other Ann", "").unwrap();
    assert!(set_extension(&conn, a.id, "7", Some("101")).unwrap());
    assert!(
        set_extension(&conn, b.id, "7", Some("101")).unwrap(),
        "same ext, other account"
    );
    assert!(
        !set_extension(&conn, a.id, "999", Some("102")).unwrap(),
        "unknown user"
    );
    assert!(
        set_extension(&conn, a.id, "8", Some("101")).is_err(),
        "taken within account"
    );
    assert_eq!(
        extension_for_user(&conn, a.id, "7").unwrap().as_deref(),
        Some("101")
    );
    assert_eq!(
        user_for_extension(&conn, a.id, "101").unwrap().as_deref(),
        Some("7")
    );
    assert_eq!(user_for_extension(&conn, a.id, "102").unwrap(), None);
    assert_eq!(
        mappings(&conn, a.id).unwrap(),
        [("7".to_string(), "101".to_string())]
    );
    // Only extension numbers cross accounts, and only those the asking one has not mapped.
    add_user(&conn, b.id, "9", "Cy").unwrap();
    assert!(set_extension(&conn, b.id, "9", Some("105")).unwrap());
    assert_eq!(extensions_of_other_accounts(&conn, a.id).unwrap(), ["105"]);
    assert!(
        extensions_of_other_accounts(&conn, b.id)
            .unwrap()
            .is_empty()
    );
    // The webhook secret must match in full; an unknown id matches nothing.
    let secret = a.webhook_secret.expose().to_string();
    assert_eq!(
        integration_by_webhook(&conn, a.id, &secret)
            .unwrap()
            .map(|i| i.id),
        Some(a.id)
    );
    assert!(
        integration_by_webhook(&conn, b.id, &secret)
            .unwrap()
            .is_none()
    );
    assert!(
        integration_by_webhook(&conn, a.id, &secret[1..])
            .unwrap()
            .is_none()
    );
    assert!(
        integration_by_webhook(&conn, 999, UNKNOWN_SECRET)
            .unwrap()
            .is_none()
    );
    let list = users(&conn, a.id).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!((list[0].name.as_str(), list[0].seen), ("Ann", true));
    assert_eq!(
        (
            list[1].name.as_str(),
            list[1].seen,
            list[1].extension.as_deref()
        ),
        ("Bob", false, None)
    );
    // Flowlu's name wins over a hand-given one; an empty answer keeps what we had.
    add_user(&conn, a.id, "7", "Renamed").unwrap();
    upsert_seen_user(&conn, a.id, "8", "", "").unwrap();
    let list = users(&conn, a.id).unwrap();
    assert_eq!(
        (list[0].name.as_str(), list[1].name.as_str()),
        ("Ann", "Bob")
    );
    assert!(set_extension(&conn, a.id, "7", None).unwrap());
    assert_eq!(extension_for_user(&conn, a.id, "7").unwrap(), None);
    assert_eq!(
        extension_for_user(&conn, b.id, "7").unwrap().as_deref(),
        Some("101")
    );
    // Deleting an integration takes its rows along.
    conn.execute("DELETE FROM flowlu_integrations WHERE id = ?1", [b.id])
        .unwrap();
    let left: i64 = conn
        .query_row("SELECT count(*) FROM flowlu_extensions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn settings_default_and_round_trip() {
    let conn = db();
    let a = integrate(&conn, &ctx("100", "a.flowlu.com", "1.0", "t"));
    assert_eq!(settings(&conn, a.id).unwrap(), CallSettings::default());
    let s = CallSettings {
        channel_name: "Office".into(),
        default_line: "+74950000000".into(),
        default_country_code: "7".into(),
        record_calls: true,
        incoming_routing: IncomingRouting::Crm,
    };
    save_settings(&conn, a.id, &s).unwrap();
    assert_eq!(settings(&conn, a.id).unwrap(), s);
}

#[test]
fn default_countries_are_listed_once_and_never_empty() {
    let conn = db();
    assert!(default_countries(&conn).unwrap().is_empty());
    for (account, country) in [("100", "7"), ("200", "7"), ("300", ""), ("400", "44")] {
        let i = integrate(&conn, &ctx(account, "a.flowlu.com", "1.0", "t"));
        let s = CallSettings {
            default_country_code: country.into(),
            ..CallSettings::default()
        };
        save_settings(&conn, i.id, &s).unwrap();
    }
    let mut countries = default_countries(&conn).unwrap();
    countries.sort();
    assert_eq!(countries, ["44", "7"]);
}
