//! What README.md and docs/flowlu-contract.md tell an integrator, checked against the
//! code: the routing answers Flowlu may give to `call.init`, and the webhook URLs an admin
//! pastes into Flowlu. A doc that drifts from the code fails here.

use appliance::flowlu::events::{RouteChoice, route_from_answer};

use crate::crm_entities::{account, hooks_on, post};
use crate::flowlu_support::{PUBLIC_URL, rig};

fn doc(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows of the `route-answers` table: (answer body, "read as" column).
fn route_rows(text: &str, name: &str) -> Vec<(String, String)> {
    let start = text
        .find("<!-- route-answers")
        .unwrap_or_else(|| panic!("{name}: no route-answers table"));
    let end = text[start..]
        .find("<!-- /route-answers -->")
        .unwrap_or_else(|| panic!("{name}: the route-answers table is not closed"));
    let rows: Vec<(String, String)> = text[start..start + end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            (cells[0].trim_matches('`').to_string(), cells[1].to_string())
        })
        .collect();
    assert!(rows.len() >= 5, "{name}: {rows:?}");
    rows
}

/// What the "read as" column says, in the code's terms.
fn documented_choice(read_as: &str) -> Option<RouteChoice> {
    let value = || read_as.split('`').nth(1).unwrap().to_string();
    match read_as.split_whitespace().next() {
        Some("extension") => Some(RouteChoice::Extension(value())),
        Some("user") => Some(RouteChoice::User(value())),
        Some("nothing") => None,
        other => panic!("unknown 'read as' cell {other:?}"),
    }
}

#[test]
fn every_documented_routing_answer_is_read_as_the_docs_say() {
    let readme = route_rows(&doc("README.md"), "README.md");
    let contract = route_rows(&doc("docs/flowlu-contract.md"), "docs/flowlu-contract.md");
    assert_eq!(
        readme, contract,
        "README and the contract show the same table"
    );
    for (body, read_as) in &readme {
        assert_eq!(
            route_from_answer(body),
            documented_choice(read_as),
            "documented answer {body}"
        );
    }
}

/// Every `/hooks/<name>/<id>/…` the docs show names the appliance's integration id (the
/// path the code builds), never Flowlu's account id.
#[test]
fn documented_hook_paths_carry_the_integration_id() {
    let code = [
        appliance::flowlu::paths::webhook(7, "S"),
        appliance::flowlu::crm::paths::entity_hook(7, "S"),
    ];
    let mut seen = 0;
    for name in ["README.md", "docs/flowlu-contract.md"] {
        let text = doc(name);
        for (at, _) in text.match_indices("/hooks/") {
            let path: String = text[at..]
                .chars()
                .take_while(|c| !matches!(c, '`' | ')' | ',' | '|' | '\n'))
                .collect();
            let parts: Vec<&str> = path.split('/').collect();
            let (hook, id) = (parts[2], parts.get(3).copied().unwrap_or(""));
            assert!(
                code.iter()
                    .any(|c| c.starts_with(&format!("/hooks/{hook}/"))),
                "{name}: {path}: no such hook"
            );
            let placeholder = id.trim_matches(|c| "{}<>".contains(c));
            assert!(
                id.chars().all(|c| c.is_ascii_digit())
                    || ["id", "integration id", "integration"].contains(&placeholder)
                    || id == "…",
                "{name}: {path}: the second segment is the integration id"
            );
            seen += 1;
        }
    }
    assert!(seen >= 6, "found {seen} documented hook paths");
}

/// README's entity-webhook URL, filled in, is exactly the URL the settings page shows,
/// and Flowlu's POST to it is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_entity_webhook_url_is_the_one_the_page_shows_and_it_works() {
    let readme = doc("README.md");
    let template: String = readme[readme
        .find("`https://<server.public_url>/hooks/flowlu-entities/")
        .expect("README shows the entity webhook URL")
        + 1..]
        .chars()
        .take_while(|c| *c != '`')
        .collect();
    let r = rig(|_| {}).await;
    let (id, path, _) = hooks_on(&r, &[]).await;
    let secret = path.rsplit('/').next().unwrap();
    let filled = template
        .replace("https://<server.public_url>", PUBLIC_URL)
        .replace("<integration id>", &id.to_string())
        .replace("<secret>", secret);
    assert_eq!(filled, format!("{PUBLIC_URL}{path}"), "README: {template}");
    let body = account("create", 5, "17", "+79161234567", "2026-12-01 10:00:00");
    let answer = post(&r, &path, &body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}
