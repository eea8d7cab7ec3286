//! The PBX connection on the settings page: saving (owner only), publishing to the
//! supervisor, precedence over `[pbx]` after a restart, the secret never shown, and
//! "test connection" against a fake AMI that replays a recorded Asterisk transcript.

use crate::fake_pbx::Fake;
use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::flowlu_support::{Ctx, notice_of, rig};

/// A fake AMI replaying the recorded Asterisk transcript; accepts `appliance` / `s3cret`.
async fn fake_ami() -> Fake {
    FakeAmi::start(vec![Script::new("actions-responses")]).await
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn pbx_settings_are_owned_published_and_survive_a_restart() {
    let r = rig(|c| {
        c.pbx.kind_name = "freeswitch".into();
        c.pbx.host = "127.0.0.1".into();
        c.pbx.port = closed_port();
        c.pbx.secret = appliance::secret::Secret::new("ClueCon-from-config");
    })
    .await;
    r.fake.add_user("tok-a", "7", "Ann", "");
    r.fake.add_user("tok-b", "9", "Bea", "");
    let a = r
        .session(&Ctx::new("100", "alpha.flowlu.com", "tok-a"))
        .await;
    let b = r
        .session(&Ctx::new("200", "beta.flowlu.com", "tok-b"))
        .await;
    // The PBX in the config file belongs to the earliest admitted account
    // (acme.flowlu.com in the harness) until the operator names another.
    let page_a = r.open(&Ctx::new("100", "alpha.flowlu.com", "tok-a")).await;
    assert!(
        page_a.body.contains("id=\"pbx-readonly\""),
        "{}",
        page_a.body
    );
    r.app.set_pbx_owner("alpha.flowlu.com");
    let mut watch = r.app.state.pbx_settings.subscribe();
    let page_a = r.open(&Ctx::new("100", "alpha.flowlu.com", "tok-a")).await;
    assert!(
        !page_a.body.contains("ClueCon-from-config"),
        "secret rendered"
    );
    assert!(page_a.body.contains("saved; leave empty to keep"));

    // Validation first: nothing saved, the form keeps what was typed (not the secret).
    let bad = r
        .act(
            "pbx",
            &a,
            &[
                ("pbx_type", "asterisk"),
                ("pbx_host", "pbx.local"),
                ("pbx_user", ""),
                ("pbx_secret", "typed-secret"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("value=\"pbx.local\""));
    assert!(!bad.body.contains("typed-secret"));
    assert_eq!(r.count("SELECT count(*) FROM pbx_settings"), 0);

    // A, the owner, saves; Save tests the connection first, and a PBX that does not
    // answer is refused, next to the PBX form's buttons, with nothing saved.
    let port = closed_port().to_string();
    let form = [
        ("pbx_type", "asterisk"),
        ("pbx_host", "127.0.0.1"),
        ("pbx_port", port.as_str()),
        ("pbx_user", "appliance"),
        ("pbx_secret", "s3cret"),
    ];
    let refused = r.act("pbx", &a, &form).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let section = &refused.body[refused
        .body
        .find("<details class=\"card\" id=\"pbx\"")
        .unwrap()..];
    let section = &section[..section.find("</details>").unwrap()];
    let notice = section
        .split("id=\"notice\"")
        .nth(1)
        .unwrap_or_else(|| panic!("{section}"));
    assert!(notice.contains("The PBX is not reachable"), "{notice}");
    assert!(notice.contains("previous settings are kept"), "{notice}");
    assert!(section.find("id=\"save-pbx\"") < section.find("id=\"notice\""));
    assert!(!refused.body.contains("s3cret"));
    assert_eq!(r.count("SELECT count(*) FROM pbx_settings"), 0);
    assert!(!watch.has_changed().unwrap(), "nothing was published");
    // Confirmed with "save anyway": saved, and the supervisor's channel gets it.
    let mut anyway = form.to_vec();
    anyway.push(("save_anyway", "1"));
    let saved = r.act("pbx", &a, &anyway).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert!(!saved.body.contains("s3cret"));
    assert!(watch.has_changed().unwrap());
    let published = watch.borrow_and_update().clone().unwrap();
    assert_eq!(published.kind.as_str(), "asterisk");
    assert_eq!(published.port.to_string(), port);
    assert_eq!(published.secret.expose(), "s3cret");
    let (owner, secret): (i64, String) = r
        .app
        .db()
        .query_row(
            "SELECT owner_integration_id, secret FROM pbx_settings",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (owner, secret.as_str()),
        (r.integration_id("100"), "s3cret")
    );

    // An empty secret keeps the saved one.
    let kept = r
        .act(
            "pbx",
            &a,
            &[
                ("pbx_type", "asterisk"),
                ("pbx_host", "127.0.0.1"),
                ("pbx_port", &port),
                ("pbx_user", "appliance"),
                ("pbx_secret", ""),
                ("save_anyway", "1"),
            ],
        )
        .await;
    assert_eq!(kept.status, 200);
    assert_eq!(
        watch.borrow_and_update().clone().unwrap().secret.expose(),
        "s3cret"
    );

    // B sees the state read-only and cannot save or probe.
    let page_b = r.act("calls", &b, &[("incoming_routing", "pbx")]).await;
    assert!(page_b.body.contains("id=\"pbx-readonly\""));
    assert!(!page_b.body.contains("name=\"pbx_host\""));
    for action in ["pbx", "pbx-test"] {
        let resp = r
            .act(
                action,
                &b,
                &[
                    ("pbx_type", "asterisk"),
                    ("pbx_host", "10.6.6.6"),
                    ("pbx_user", "x"),
                    ("pbx_secret", "y"),
                ],
            )
            .await;
        assert_eq!(resp.status, 403, "{action}: {}", resp.body);
        assert!(
            notice_of(&resp.body)
                .unwrap()
                .contains("another Flowlu account")
        );
    }
    let host: String = r
        .app
        .db()
        .query_row("SELECT host FROM pbx_settings", [], |row| row.get(0))
        .unwrap();
    assert_eq!(host, "127.0.0.1");
    assert_eq!(watch.borrow().clone().unwrap().kind.as_str(), "asterisk");

    // After a restart the saved settings win over [pbx] (FreeSWITCH in the file).
    let app = r.app.restart_with(|_| {}).await;
    let health = app.get("/healthz").await.json();
    assert_eq!(health["pbx_detail"]["type"], "asterisk", "{health}");
    let current = app.state.pbx_settings.borrow().clone().unwrap();
    assert_eq!(
        (current.kind.as_str(), current.port.to_string()),
        ("asterisk", port)
    );
    assert_eq!(current.secret.expose(), "s3cret");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn test_connection_reports_the_pbx_state() {
    let r = rig(|_| {}).await;
    r.fake.add_user("tok-a", "7", "Ann", "");
    let a = r
        .session(&Ctx::new("100", "alpha.flowlu.com", "tok-a"))
        .await;
    let ami = fake_ami().await;
    let port = ami.port().to_string();
    let resp = r
        .act(
            "pbx-test",
            &a,
            &[
                ("pbx_type", "asterisk"),
                ("pbx_host", "127.0.0.1"),
                ("pbx_port", &port),
                ("pbx_user", "appliance"),
                ("pbx_secret", "s3cret"),
            ],
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let notice = notice_of(&resp.body).unwrap();
    assert!(notice.starts_with("Connection test passed"), "{notice}");
    assert!(
        resp.body.contains(&format!("value=\"{port}\"")),
        "the form keeps its values"
    );
    assert!(!resp.body.contains("s3cret"));
    // A wrong secret is reported as a refused login, not as an unreachable PBX.
    let resp = r
        .act(
            "pbx-test",
            &a,
            &[
                ("pbx_type", "asterisk"),
                ("pbx_host", "127.0.0.1"),
                ("pbx_port", &port),
                ("pbx_user", "appliance"),
                ("pbx_secret", "wrong"),
            ],
        )
        .await;
    let notice = notice_of(&resp.body).unwrap();
    assert!(notice.starts_with("The PBX refused the login"), "{notice}");
    assert!(
        !resp.body.contains("wrong\""),
        "the typed secret is not echoed"
    );
    // Testing saves nothing.
    assert_eq!(r.count("SELECT count(*) FROM pbx_settings"), 0);
    assert!(r.app.state.pbx_settings.borrow().is_none());

    let down = closed_port().to_string();
    let resp = r
        .act(
            "pbx-test",
            &a,
            &[
                ("pbx_type", "freeswitch"),
                ("pbx_host", "127.0.0.1"),
                ("pbx_port", &down),
                ("pbx_secret", "ClueCon"),
            ],
        )
        .await;
    assert_eq!(resp.status, 200);
    let notice = notice_of(&resp.body).unwrap();
    assert!(notice.starts_with("The PBX is not reachable"), "{notice}");
}
