//! The mapping section's PBX lines: the extensions the PBX lists, with their live state,
//! from the same source as Flowlu's `employees.list` ([`status::employee_lines`]), so the
//! admin picks an extension instead of typing it and sees the ones nobody is mapped to.
//! While the PBX is down the list is empty and typing still works.

use serde::Serialize;

use crate::app::State;
use crate::http::webhook::status;

/// One PBX line as the page shows it.
#[derive(Debug, Serialize)]
pub struct LineView {
    pub extension: String,
    pub name: String,
    /// `online` (registered), `offline`, `busy` (on a call), `ringing`.
    pub state: &'static str,
    pub user_id: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct LinesView {
    /// False while the PBX is down or could not list its extensions.
    pub live: bool,
    pub items: Vec<LineView>,
    /// The lines no employee of this account is mapped to.
    pub unmapped: Vec<usize>,
}

pub async fn view(state: &State, integration: i64) -> LinesView {
    let (items, _, live) = match status::employee_lines(state, integration).await {
        Ok(lines) => lines,
        Err(e) => {
            log::warn!("settings: cannot list the PBX lines: {e}");
            return LinesView::default();
        }
    };
    let items: Vec<LineView> = items
        .into_iter()
        .map(|e| LineView {
            extension: e.extension,
            name: e.name,
            state: e.state.as_str(),
            user_id: e.user_id,
        })
        .collect();
    let unmapped = (0..items.len())
        .filter(|&i| live && items[i].user_id.is_none())
        .collect();
    LinesView {
        live,
        items,
        unmapped,
    }
}

impl LinesView {
    /// The live state of `extension`, if the PBX lists it.
    pub fn state_of(&self, extension: &str) -> Option<&'static str> {
        self.items
            .iter()
            .find(|l| self.live && l.extension == extension)
            .map(|l| l.state)
    }
}
