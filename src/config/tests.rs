use std::io::Write;

use super::*;

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// The configuration from a minimal file (TLS paths set) plus `extra` TOML and `env`: the
/// helper of each section's own tests.
pub(super) fn load_env(extra: &str, env: &[(&str, &str)]) -> Result<Config, String> {
    let f = file(&format!(
        "[server]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n{extra}"
    ));
    load(&opts(Some(f.path()), env, vec![]))
        .map(|(c, _)| c)
        .map_err(|e| e.to_string())
}

fn opts(path: Option<&Path>, env: &[(&str, &str)], flags: Vec<Flag>) -> LoadOptions {
    LoadOptions {
        path: path.map(Path::to_path_buf),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        flags,
    }
}

const MINIMAL: &str = "[server]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n";

fn err(o: &LoadOptions) -> String {
    load(o).unwrap_err().to_string()
}

#[test]
fn defaults_are_the_example_file() {
    // The defaults need TLS files, so the bare defaults do not validate on their own:
    // the example documents that tls_cert/tls_key are required.
    let e = err(&opts(None, &[], vec![]));
    assert!(e.contains("server.tls_cert"), "{e}");
    let f = file(MINIMAL);
    let (c, sources) = load(&opts(Some(f.path()), &[], vec![])).unwrap();
    assert_eq!(c.server.listen, "0.0.0.0:8443");
    assert_eq!(c.server.max_body_bytes, 1024 * 1024);
    assert_eq!(c.server.shutdown_grace_secs, 10);
    assert_eq!(c.pbx.kind(), None);
    assert_eq!(c.log.level, "info");
    assert_eq!(sources.get("server.listen"), &Source::Default);
    assert_eq!(
        sources.get("server.tls_cert"),
        &Source::File(f.path().to_path_buf())
    );
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let f = file(&format!(
        "{MINIMAL}listen = \"127.0.0.1:1000\"\n[pbx]\ntype = \"asterisk\"\nhost = \"10.0.0.1\"\n"
    ));
    let env = [
        ("APPLIANCE_PBX__HOST", "10.0.0.2"),
        ("APPLIANCE_SERVER__LISTEN", "127.0.0.1:2000"),
        (
            "APPLIANCE_SERVER__TRUSTED_PROXIES",
            "10.0.0.1, 192.168.0.0/16",
        ),
        ("APPLIANCE_SERVER__PLAIN_HTTP", "yes"),
        ("APPLIANCE_CONFIG", "/ignored/not/a/key"),
        ("PATH", "/usr/bin"),
    ];
    let flags = vec![Flag {
        key: "server.listen",
        name: "--listen",
        value: toml::Value::String("127.0.0.1:3000".into()),
    }];
    let (c, sources) = load(&opts(Some(f.path()), &env, flags)).unwrap();
    assert_eq!(c.pbx.host, "10.0.0.2");
    assert_eq!(c.pbx.kind(), Some(PbxType::Asterisk));
    assert_eq!(c.pbx.effective_port(), 5038);
    assert_eq!(c.server.listen, "127.0.0.1:3000");
    assert!(c.server.plain_http);
    assert_eq!(c.server.trusted_proxies, vec!["10.0.0.1", "192.168.0.0/16"]);
    assert_eq!(
        sources.get("pbx.host"),
        &Source::Env("APPLIANCE_PBX__HOST".into())
    );
    assert_eq!(
        sources.get("server.listen"),
        &Source::Flag("--listen".into())
    );
}

#[test]
fn unknown_keys_are_named_with_their_origin() {
    let f = file(&format!("{MINIMAL}[pbx]\nhots = \"x\"\n"));
    let e = err(&opts(Some(f.path()), &[], vec![]));
    assert!(e.contains("`pbx.hots`"), "{e}");
    assert!(e.contains(&f.path().display().to_string()), "{e}");

    let f = file(&format!("{MINIMAL}[nosuch]\nx = 1\n"));
    let e = err(&opts(Some(f.path()), &[], vec![]));
    assert!(e.contains("`nosuch.x`"), "{e}");

    let f = file(MINIMAL);
    let e = err(&opts(
        Some(f.path()),
        &[("APPLIANCE_PBX__HOTS", "x")],
        vec![],
    ));
    assert!(
        e.contains("`pbx.hots`") && e.contains("APPLIANCE_PBX__HOTS"),
        "{e}"
    );
}

#[test]
fn wrong_types_are_named() {
    let f = file(&format!("{MINIMAL}[pbx]\nport = \"5038\"\n"));
    let e = err(&opts(Some(f.path()), &[], vec![]));
    assert!(
        e.contains("`pbx.port`") && e.contains("expected an integer"),
        "{e}"
    );

    let f = file(MINIMAL);
    let e = err(&opts(
        Some(f.path()),
        &[("APPLIANCE_PBX__PORT", "five")],
        vec![],
    ));
    assert!(
        e.contains("`pbx.port`") && e.contains("APPLIANCE_PBX__PORT"),
        "{e}"
    );

    let f = file(&format!("{MINIMAL}trusted_proxies = [1, 2]\n"));
    let e = err(&opts(Some(f.path()), &[], vec![]));
    assert!(e.contains("a list of strings"), "{e}");
}

#[test]
fn out_of_range_port_is_rejected() {
    let f = file(&format!("{MINIMAL}[pbx]\nport = 70000\n"));
    let e = err(&opts(Some(f.path()), &[], vec![]));
    assert!(e.contains("pbx") && e.contains("port"), "{e}");
}

#[test]
fn semantic_validation_names_key_and_source() {
    let f = file(&format!("{MINIMAL}listen = \"nonsense\"\n"));
    let e = err(&opts(Some(f.path()), &[], vec![]));
    assert!(
        e.contains("`server.listen`") && e.contains(&f.path().display().to_string()),
        "{e}"
    );

    let f = file(MINIMAL);
    let e = err(&opts(
        Some(f.path()),
        &[("APPLIANCE_PBX__TYPE", "avaya")],
        vec![],
    ));
    assert!(
        e.contains("`pbx.type`") && e.contains("APPLIANCE_PBX__TYPE"),
        "{e}"
    );

    let e = err(&opts(
        Some(f.path()),
        &[("APPLIANCE_SERVER__PUBLIC_URL", "ftp://x")],
        vec![],
    ));
    assert!(e.contains("`server.public_url`"), "{e}");

    let e = err(&opts(
        Some(f.path()),
        &[("APPLIANCE_SERVER__TRUSTED_PROXIES", "10.0.0.0/99")],
        vec![],
    ));
    assert!(e.contains("`server.trusted_proxies`"), "{e}");

    let e = err(&opts(
        Some(f.path()),
        &[(
            "APPLIANCE_SERVER__TRUSTED_NETWORKS",
            "127.0.0.1/32,loopback",
        )],
        vec![],
    ));
    assert!(
        e.contains("`server.trusted_networks`") && e.contains("loopback"),
        "{e}"
    );

    let e = err(&opts(
        Some(f.path()),
        &[("APPLIANCE_LOG__LEVEL", "loud")],
        vec![],
    ));
    assert!(e.contains("`log.level`"), "{e}");

    let e = err(&opts(
        Some(f.path()),
        &[("APPLIANCE_STORAGE__DATA_DIR", "relative/dir")],
        vec![],
    ));
    assert!(e.contains("`storage.data_dir`"), "{e}");
}

#[test]
fn missing_and_malformed_files_are_clear() {
    let e = err(&opts(
        Some(Path::new("/nonexistent/appliance.toml")),
        &[],
        vec![],
    ));
    assert!(
        e.contains("/nonexistent/appliance.toml") && e.contains("--init"),
        "{e}"
    );
    let f = file("[server\nlisten=");
    let e = err(&opts(Some(f.path()), &[], vec![]));
    assert!(
        e.contains("not valid TOML") && e.contains(&f.path().display().to_string()),
        "{e}"
    );
}

#[test]
fn redacted_output_hides_secrets() {
    let f = file(&format!(
        "{MINIMAL}[pbx]\ntype = \"asterisk\"\nsecret = \"s3cret\"\n"
    ));
    let (c, _) = load(&opts(Some(f.path()), &[], vec![])).unwrap();
    let shown = c.to_redacted_toml();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("secret = \"***\""), "{shown}");
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn every_example_key_is_documented_by_a_comment() {
    // Each key line in the shipped example is preceded by a comment (or another key of
    // the same group), so operators never meet an unexplained setting.
    let mut previous_was_comment_or_key = false;
    for line in EXAMPLE.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('[') {
            previous_was_comment_or_key = false;
            continue;
        }
        if line.starts_with('#') {
            previous_was_comment_or_key = true;
            continue;
        }
        assert!(previous_was_comment_or_key, "undocumented key: {line}");
    }
}

#[test]
fn flowlu_keys_have_defaults_and_are_validated() {
    let f = file(MINIMAL);
    let (c, _) = load(&opts(Some(f.path()), &[], vec![])).unwrap();
    assert_eq!(c.flowlu.allowed_domains, ["flowlu.com", "flowlu.ru"]);
    assert_eq!(c.flowlu.base_url_override(), None);
    assert!(!c.flowlu.allow_plain_http_crm);
    assert!(c.flowlu.frame_ancestors.is_empty());
    assert_eq!(c.flowlu.request_timeout_secs, 10);
    assert_eq!(c.flowlu.refresh_before_secs, 600);
    assert_eq!(c.flowlu.expires_at_utc_offset_minutes, 0);
    assert!(c.flowlu.client_secret.is_empty());
    assert_eq!(c.flowlu.session_minutes, 120);

    let (c, _) = load(&opts(
        Some(f.path()),
        &[
            (
                "APPLIANCE_FLOWLU__ALLOWED_DOMAINS",
                "flowlu.com, crm.example.org",
            ),
            (
                "APPLIANCE_FLOWLU__BASE_URL_OVERRIDE",
                "http://127.0.0.1:9999/",
            ),
            (
                "APPLIANCE_FLOWLU__FRAME_ANCESTORS",
                "https://crm.example.org",
            ),
            ("APPLIANCE_FLOWLU__EXPIRES_AT_UTC_OFFSET_MINUTES", "-180"),
            ("APPLIANCE_FLOWLU__CLIENT_SECRET", "cs"),
        ],
        vec![],
    ))
    .unwrap();
    assert_eq!(c.flowlu.allowed_domains, ["flowlu.com", "crm.example.org"]);
    assert_eq!(c.flowlu.base_url_override(), Some("http://127.0.0.1:9999"));
    assert_eq!(c.flowlu.expires_at_utc_offset_minutes, -180);
    assert!(!c.to_redacted_toml().contains("\"cs\""));

    for (var, value) in [
        ("APPLIANCE_FLOWLU__ALLOWED_DOMAINS", ""),
        ("APPLIANCE_FLOWLU__ALLOWED_DOMAINS", "Flowlu.com"),
        ("APPLIANCE_FLOWLU__ALLOWED_DOMAINS", "com"),
        ("APPLIANCE_FLOWLU__ALLOWED_DOMAINS", "*.flowlu.com"),
        ("APPLIANCE_FLOWLU__BASE_URL_OVERRIDE", "ftp://x"),
        ("APPLIANCE_FLOWLU__BASE_URL_OVERRIDE", "http://x/api"),
        ("APPLIANCE_FLOWLU__BASE_URL_OVERRIDE", "http://u:p@x"),
        ("APPLIANCE_FLOWLU__FRAME_ANCESTORS", "https://a.example/"),
        ("APPLIANCE_FLOWLU__FRAME_ANCESTORS", "https://a.example/x"),
        ("APPLIANCE_FLOWLU__FRAME_ANCESTORS", "'self'"),
        ("APPLIANCE_FLOWLU__REQUEST_TIMEOUT_SECS", "0"),
        ("APPLIANCE_FLOWLU__EXPIRES_AT_UTC_OFFSET_MINUTES", "900"),
        ("APPLIANCE_FLOWLU__SESSION_MINUTES", "0"),
    ] {
        let e = err(&opts(Some(f.path()), &[(var, value)], vec![]));
        let key = var
            .trim_start_matches("APPLIANCE_FLOWLU__")
            .to_ascii_lowercase();
        assert!(e.contains(&format!("`flowlu.{key}`")), "{var}={value}: {e}");
        assert!(e.contains(var), "{e}");
    }
}

#[test]
fn acme_settings_are_validated_with_their_keys() {
    let f = file(MINIMAL);
    let path = Some(f.path());
    let e = err(&opts(path, &[("APPLIANCE_ACME__ENABLED", "true")], vec![]));
    assert!(
        e.contains("`acme.domain`"),
        "no domain and no public_url: {e}"
    );
    let (config, _) = load(&opts(
        path,
        &[
            ("APPLIANCE_ACME__ENABLED", "true"),
            (
                "APPLIANCE_SERVER__PUBLIC_URL",
                "https://PBX.example.com:8443",
            ),
        ],
        vec![],
    ))
    .unwrap();
    assert_eq!(config.acme_domain().as_deref(), Some("pbx.example.com"));
    assert_eq!(config.acme.challenge(), AcmeChallenge::Http01);
    for (key, value, named) in [
        ("APPLIANCE_ACME__CHALLENGE", "dns-01", "`acme.challenge`"),
        ("APPLIANCE_ACME__HTTP_LISTEN", "80", "`acme.http_listen`"),
        ("APPLIANCE_ACME__EMAIL", "nobody", "`acme.email`"),
        ("APPLIANCE_ACME__DOMAIN", "10.0.0.1", "`acme.domain`"),
        (
            "APPLIANCE_ACME__DIRECTORY_URL",
            "http://ca.example",
            "`acme.directory_url`",
        ),
        ("APPLIANCE_ACME__RENEW_DAYS", "0", "`acme.renew_days`"),
        ("APPLIANCE_SERVER__PLAIN_HTTP", "true", "server.plain_http"),
    ] {
        let e = err(&opts(
            path,
            &[
                ("APPLIANCE_ACME__ENABLED", "true"),
                ("APPLIANCE_ACME__DOMAIN", "pbx.example.com"),
                (key, value),
            ],
            vec![],
        ));
        assert!(e.contains(named), "{key}={value}: {e}");
    }
    assert!(is_dns_name("pbx.example.com") && !is_dns_name("-x.example.com"));
    assert!(!is_dns_name("a..b") && !is_dns_name("::1"));
}

#[test]
fn pbx_dialling_defaults_follow_the_type() {
    let f = file(MINIMAL);
    let (c, _) = load(&opts(Some(f.path()), &[], vec![])).unwrap();
    assert_eq!(c.pbx.agent_channel(PbxType::Asterisk), "PJSIP/{ext}");
    assert_eq!(c.pbx.agent_channel(PbxType::Freeswitch), "user/{ext}");
    assert_eq!(c.pbx.context(PbxType::Asterisk), "from-internal");
    assert_eq!(c.pbx.context(PbxType::Freeswitch), "default");
    assert_eq!(c.pbx.transfer_context(PbxType::Asterisk), "from-internal");
    assert_eq!(c.pbx.dialplan, "XML");
    assert_eq!(c.pbx.ring_secs, 30);
    assert!(c.pbx.reconnect_min_ms <= c.pbx.reconnect_max_ms);

    let f = file(&format!(
        "{MINIMAL}[pbx]\nagent_channel = \"Local/{{ext}}@from-internal\"\ntransfer_context = \"ext-local\"\n"
    ));
    let (c, _) = load(&opts(Some(f.path()), &[], vec![])).unwrap();
    assert_eq!(
        c.pbx.agent_channel(PbxType::Asterisk),
        "Local/{ext}@from-internal"
    );
    assert_eq!(c.pbx.transfer_context(PbxType::Asterisk), "ext-local");
}

#[test]
fn bad_pbx_dialling_and_timing_keys_are_named() {
    for (body, key) in [
        ("agent_channel = \"PJSIP/100\"", "pbx.agent_channel"),
        ("context = \"from internal\"", "pbx.context"),
        ("transfer_context = \"a,b\"", "pbx.transfer_context"),
        ("dialplan = \"\"", "pbx.dialplan"),
        ("keepalive_ms = 0", "pbx.keepalive_ms"),
        (
            "reconnect_min_ms = 5000\nreconnect_max_ms = 1000",
            "pbx.reconnect_max_ms",
        ),
    ] {
        let f = file(&format!("{MINIMAL}[pbx]\n{body}\n"));
        let e = err(&opts(Some(f.path()), &[], vec![]));
        assert!(e.contains(key), "{body}: {e}");
    }
}

#[test]
fn routing_servers_listen_on_loopback_only() {
    let f = file(MINIMAL);
    let (c, _) = load(&opts(Some(f.path()), &[], vec![])).unwrap();
    assert_eq!(c.routing.esl_addr().to_string(), "127.0.0.1:8084");
    assert_eq!(c.routing.agi_addr().to_string(), "127.0.0.1:4573");
    for (key, env) in [
        ("routing.esl_listen", "APPLIANCE_ROUTING__ESL_LISTEN"),
        ("routing.agi_listen", "APPLIANCE_ROUTING__AGI_LISTEN"),
    ] {
        for bad in ["0.0.0.0:8084", "192.0.2.10:8084", "[::]:8084"] {
            let e = err(&opts(Some(f.path()), &[(env, bad)], vec![]));
            assert!(
                e.contains(&format!("`{key}`")) && e.contains("loopback"),
                "{bad}: {e}"
            );
        }
        let e = err(&opts(Some(f.path()), &[(env, "localhost")], vec![]));
        assert!(
            e.contains(&format!("`{key}`")) && e.contains("address:port"),
            "{e}"
        );
        for good in ["[::1]:8084", "127.0.0.1:0"] {
            load(&opts(Some(f.path()), &[(env, good)], vec![])).unwrap();
        }
    }
}

#[test]
fn an_endpoint_is_a_trunk_or_an_employee_never_both() {
    let f = file(&format!(
        "{MINIMAL}\n[calls]\ntrunk_endpoints = [\"provider\", \"800\"]\nemployee_endpoints = [\"800\"]\n"
    ));
    let e = err(&opts(Some(f.path()), &[], vec![]));
    assert!(
        e.contains("`calls.employee_endpoints`") && e.contains("\"800\""),
        "{e}"
    );
    let f = file(&format!(
        "{MINIMAL}\n[calls]\nemployee_endpoints = [\"front desk\"]\n"
    ));
    let e = err(&opts(Some(f.path()), &[], vec![]));
    assert!(e.contains("`calls.employee_endpoints`"), "{e}");
    let f = file(&format!(
        "{MINIMAL}\n[calls]\nemployee_endpoints = [\"150010001\"]\n"
    ));
    let (c, _) = load(&opts(Some(f.path()), &[], vec![])).unwrap();
    assert_eq!(c.calls.employee_endpoints, ["150010001"]);
}
