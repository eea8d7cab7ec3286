use super::*;

/// README.md shows the snippets as the appliance prints them for the default addresses.
#[test]
fn the_readme_holds_the_dialplan_snippets() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (what, snippet) in [
        ("Asterisk", asterisk_dialplan("127.0.0.1:4573")),
        ("FreeSWITCH", freeswitch_dialplan("127.0.0.1:8084")),
    ] {
        assert!(
            readme.contains(&snippet),
            "README.md lacks the current {what} snippet:\n{snippet}"
        );
    }
}

#[test]
fn the_freeswitch_snippet_calls_the_configured_address_and_falls_back() {
    let xml = freeswitch_dialplan("[::1]:9000");
    assert!(xml.contains(r#"<action application="socket" data="[::1]:9000 async"/>"#));
    // The dialplan must go on after the socket whatever the appliance does, and the
    // fallback is the public context's own extensions (continue="true").
    let socket_resume = xml.find("socket_resume=true").unwrap();
    assert!(socket_resume < xml.find("application=\"socket\"").unwrap());
    assert!(xml.contains(r#"<extension name="appliance_route" continue="true">"#));
    assert!(xml.contains(r#"<condition field="${appliance_route}" expression="^.+$">"#));
    assert!(xml.contains(r#"data="continue_on_fail=true""#));
}
