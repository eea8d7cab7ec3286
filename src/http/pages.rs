//! HTML pages rendered with minijinja from templates embedded out of `assets/templates/`.
//!
//! Autoescaping is on for every `.html` template, so values from requests or the PBX can
//! never inject markup.

use std::sync::Arc;

use hyper::StatusCode;
use minijinja::{Environment, context};
use serde::Serialize;

/// Every template, embedded at compile time: (name, source).
const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../assets/templates/base.html"),
    ),
    (
        "index.html",
        include_str!("../../assets/templates/index.html"),
    ),
    (
        "error.html",
        include_str!("../../assets/templates/error.html"),
    ),
    (
        "settings.html",
        include_str!("../../assets/templates/settings.html"),
    ),
    ("c2c.html", include_str!("../../assets/templates/c2c.html")),
    (
        "not_admitted.html",
        include_str!("../../assets/templates/not_admitted.html"),
    ),
];

#[derive(Clone)]
pub struct Pages {
    env: Arc<Environment<'static>>,
}

impl Default for Pages {
    fn default() -> Self {
        Self::new()
    }
}

impl Pages {
    pub fn new() -> Pages {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name} does not compile: {e}"));
        }
        Pages { env: Arc::new(env) }
    }

    /// Renders `name` with `ctx`. A template error is a bug; it is logged and a plain
    /// fallback page is returned so the client still gets an answer.
    pub fn render<S: Serialize>(&self, name: &str, ctx: S) -> String {
        match self
            .env
            .get_template(name)
            .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&ctx))))
        {
            Ok(page) => page,
            Err(e) => {
                log::error!("rendering {name} failed: {e:#}");
                "<!doctype html><title>Error</title><p>Internal error.</p>".to_string()
            }
        }
    }

    pub fn error(&self, status: StatusCode, message: &str) -> String {
        self.render(
            "error.html",
            context! {
                status => status.as_u16(),
                reason => status.canonical_reason().unwrap_or(""),
                message => message,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_and_escapes() {
        let pages = Pages::new();
        let page = pages.error(StatusCode::NOT_FOUND, "<script>x</script>");
        assert!(page.contains("404"));
        assert!(page.contains("&lt;script&gt;"), "{page}");
        assert!(!page.contains("<script>x"));
    }
}
