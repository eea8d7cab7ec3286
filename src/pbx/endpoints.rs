//! What the PBX itself says its endpoints are: employees' phones or trunks.
//!
//! Asked at every login and every `[pbx] endpoints_refresh_ms` after it (README
//! "Employee or customer"): Asterisk `PJSIPShowEndpoints` and `SIPpeers` (either may be refused
//! when its channel driver is not loaded), FreeSWITCH `list_users` and `sofia status`.
//! The facts that tell a phone from a trunk:
//!
//! - PJSIP (`EndpointList`): an endpoint with `OutboundAuths` is one we authenticate to
//!   (a provider), a trunk; one with inbound `Auths` and no outbound auth is a phone that
//!   registers or calls with a password, an employee; one with neither is matched by its
//!   address (`identify`), which is how providers are set up, a trunk.
//! - chan_sip (`PeerEntry`): `Dynamic: yes` (`host=dynamic`) is a phone that registers,
//!   an employee; a fixed host is a trunk.
//! - FreeSWITCH: every directory user (`list_users`) is an employee; every sofia gateway
//!   (`sofia status`, type `gateway`) is a trunk.
//!
//! The call tracker takes the result as a pure input ([`Event::Endpoints`]), replacing
//! the previous one wholesale.
//!
//! [`Event::Endpoints`]: super::Event::Endpoints

use std::collections::BTreeSet;

/// The PBX's own lists, by endpoint name (`100`, `trunk`, a FreeSWITCH user id or
/// gateway name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoints {
    pub employees: BTreeSet<String>,
    pub trunks: BTreeSet<String>,
    /// The lists that answered (`PJSIPShowEndpoints`, `SIPpeers`, `list_users`,
    /// `sofia status`), for the log.
    pub sources: Vec<&'static str>,
}

/// What an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Employee,
    Trunk,
}

impl Endpoints {
    pub fn add(&mut self, name: &str, kind: Kind) {
        let name = name.trim();
        if name.is_empty() {
            return;
        }
        match kind {
            Kind::Employee => self.employees.insert(name.to_string()),
            Kind::Trunk => self.trunks.insert(name.to_string()),
        };
    }

    /// One line for the log: how many of each, from which lists.
    pub fn summary(&self) -> String {
        format!(
            "{} employee endpoint(s), {} trunk(s) from {}",
            self.employees.len(),
            self.trunks.len(),
            self.sources.join(" + ")
        )
    }
}

/// A PJSIP endpoint from its `EndpointList` `Auths` and `OutboundAuths` fields.
pub fn pjsip_kind(auths: &str, outbound_auths: &str) -> Kind {
    if !outbound_auths.trim().is_empty() || auths.trim().is_empty() {
        Kind::Trunk
    } else {
        Kind::Employee
    }
}

/// A chan_sip peer from its `PeerEntry` `Dynamic` field.
pub fn sip_peer_kind(dynamic: &str) -> Kind {
    if dynamic.trim().eq_ignore_ascii_case("yes") {
        Kind::Employee
    } else {
        Kind::Trunk
    }
}

/// The gateway names in a `sofia status` answer: rows typed `gateway`, named
/// `profile::gateway`. `None` when the answer is no table (mod_sofia not loaded).
pub fn sofia_gateways(body: &str) -> Option<Vec<String>> {
    if !body.contains("=====") {
        return None;
    }
    Some(
        body.lines()
            .filter_map(|line| {
                let mut cols = line.split_whitespace();
                let (name, kind) = (cols.next()?, cols.next()?);
                (kind == "gateway").then(|| {
                    let gw = name.rsplit_once("::").map_or(name, |(_, gw)| gw);
                    gw.to_string()
                })
            })
            .filter(|gw| !gw.is_empty())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pjsip_phones_authenticate_to_us_and_trunks_do_not() {
        // The recorded EndpointList (sip-actions-registered): 100 has `Auths: 100`, the
        // carrier's `trunk` neither auth (identified by address).
        assert_eq!(pjsip_kind("100", ""), Kind::Employee);
        assert_eq!(pjsip_kind("", ""), Kind::Trunk);
        // A provider we register with (FreePBX trunks: outbound_auth).
        assert_eq!(pjsip_kind("", "provider-auth"), Kind::Trunk);
        assert_eq!(pjsip_kind("provider-in", "provider-out"), Kind::Trunk);
    }

    #[test]
    fn chan_sip_phones_are_dynamic_peers() {
        assert_eq!(sip_peer_kind("yes"), Kind::Employee);
        assert_eq!(sip_peer_kind("no"), Kind::Trunk);
        assert_eq!(sip_peer_kind(""), Kind::Trunk);
    }

    #[test]
    fn sofia_status_lists_gateways_by_name() {
        // A gateway row as mod_sofia prints it, beside the recorded profile rows.
        let body = "                     Name\t   Type\t                                      Data\tState\n=================================================================================================\n                 external\tprofile\t              sip:mod_sofia@127.0.0.1:5090\tRUNNING (0)\n       external::provider1\tgateway\t                sip:74950000000@sip.example.net\tREGED\n                 internal\tprofile\t              sip:mod_sofia@127.0.0.1:5080\tRUNNING (0)\n=================================================================================================\n2 profiles 0 aliases\n";
        assert_eq!(sofia_gateways(body), Some(vec!["provider1".to_string()]));
        assert_eq!(sofia_gateways("-ERR sofia Command not found!\n"), None);
    }

    #[test]
    fn lists_collect_names_once() {
        let mut e = Endpoints::default();
        e.add("100", Kind::Employee);
        e.add("100", Kind::Employee);
        e.add(" ", Kind::Trunk);
        e.add("trunk", Kind::Trunk);
        e.sources.push("PJSIPShowEndpoints");
        assert_eq!(e.employees.len(), 1);
        assert_eq!(e.trunks.len(), 1);
        assert_eq!(
            e.summary(),
            "1 employee endpoint(s), 1 trunk(s) from PJSIPShowEndpoints"
        );
    }
}
