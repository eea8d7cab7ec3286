//! Who is who on a call: employees (agents) and customers.
//!
//! The PBX never says which leg is the customer. The rule (README, "Call direction"):
//! a leg belongs to an employee when its endpoint (the PJSIP/SIP endpoint, FreeSWITCH
//! user, or the number of a `Local/…@ctx` / `loopback/…` channel) is an extension. What
//! is an extension is decided, first match wins, by
//! 1. `[calls] trunk_endpoints`: never an extension; `[calls] employee_endpoints`: always;
//! 2. the PBX's own lists ([`Rules::set_endpoints`], `crate::pbx::endpoints`): its
//!    trunks are not, its employees' endpoints are;
//! 3. the digit rule: all digits, `[calls] extension_min_digits..=extension_max_digits`
//!    long.
//!
//! Everything else is the customer side: a trunk endpoint, a leg entering an inbound
//! context, or a dialled external number.

use std::collections::HashSet;

use crate::calls::Direction;
use crate::config::CallsConfig;
use crate::pbx::{Channel, Endpoints, Origin};

#[derive(Debug, Clone)]
pub struct Rules {
    min: usize,
    max: usize,
    trunks: HashSet<String>,
    employees: HashSet<String>,
    inbound_contexts: HashSet<String>,
    /// Longest first.
    prefixes: Vec<String>,
    /// What the PBX says its endpoints are (empty until it answered).
    pbx: Endpoints,
}

/// What the party who started a call (the first leg, calling in) makes of it: the live
/// tracker and the CDR back-fill (`crate::cdr`) both decide direction and numbers here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub direction: Direction,
    /// The customer's number (internal calls: the extension dialled; service calls: the
    /// feature code).
    pub phone: String,
    /// The DID a customer called.
    pub line: String,
    /// The employee who placed the call.
    pub extension: Option<String>,
    /// An employee dialled a feature code (`*97`, `*8`): never reported on its own.
    pub service: bool,
}

/// What a leg stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// An employee's phone, by extension.
    Agent(String),
    /// The customer (the trunk side), with the number when known.
    Customer(String),
    /// Cannot tell (yet).
    Unknown,
}

impl Rules {
    pub fn new(c: &CallsConfig) -> Rules {
        Rules {
            min: c.extension_min_digits as usize,
            max: c.extension_max_digits as usize,
            trunks: c.trunk_endpoints.iter().cloned().collect(),
            employees: c.employee_endpoints.iter().cloned().collect(),
            inbound_contexts: c.inbound_contexts.iter().cloned().collect(),
            prefixes: {
                let mut p = c.outbound_prefixes.clone();
                p.sort_by_key(|p| std::cmp::Reverse(p.len()));
                p
            },
            pbx: Endpoints::default(),
        }
    }

    /// The PBX's own endpoint lists, replacing the previous ones: they decide over the
    /// digit rule, `[calls] trunk_endpoints` over them.
    pub fn set_endpoints(&mut self, endpoints: Endpoints) {
        self.pbx = endpoints;
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.pbx
    }

    pub fn take_endpoints(&mut self) -> Endpoints {
        std::mem::take(&mut self.pbx)
    }

    /// A trunk by `[calls] trunk_endpoints`, or by the PBX's own list unless `[calls]
    /// employee_endpoints` names it.
    fn is_trunk(&self, endpoint: &str) -> bool {
        self.trunks.contains(endpoint)
            || (self.pbx.trunks.contains(endpoint) && !self.employees.contains(endpoint))
    }

    /// What an employee dialled without the outside-line prefix (`[calls]
    /// outbound_prefixes`), when what is left is longer than an extension.
    pub fn strip_outbound_prefix(&self, dialled: &str) -> String {
        let digits = dialled.strip_prefix('+').is_none();
        for p in &self.prefixes {
            if digits
                && let Some(rest) = dialled.strip_prefix(p.as_str())
                && rest.len() > self.max
            {
                return rest.to_string();
            }
        }
        dialled.to_string()
    }

    /// True for an employee's extension such as `100` or `1001` (see the module
    /// documentation for the order of the rules).
    pub fn is_extension(&self, s: &str) -> bool {
        if self.is_trunk(s) {
            return false;
        }
        self.employees.contains(s)
            || self.pbx.employees.contains(s)
            || ((self.min..=self.max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Direction and numbers of a call started by `caller` dialling `dialled`: a customer
    /// calling in makes an incoming call (to the DID dialled); an employee dialling a
    /// feature code a service call; dialling an extension an internal call; dialling
    /// anything else an outgoing call (the outside-line prefix cut). `None` for a party
    /// nobody can tell.
    pub fn placed_by(&self, caller: &Role, dialled: &str) -> Option<Placed> {
        match caller {
            Role::Customer(number) => Some(Placed {
                direction: Direction::Incoming,
                phone: clean_number(number),
                line: clean_number(dialled),
                extension: None,
                service: false,
            }),
            Role::Agent(ext) => {
                let service = is_feature_code(dialled);
                let number = if service {
                    dialled.trim().to_string()
                } else {
                    clean_number(dialled)
                };
                let direction = if service || self.is_extension(&number) {
                    Direction::Internal
                } else {
                    Direction::Outgoing
                };
                let phone = match direction {
                    Direction::Outgoing => self.strip_outbound_prefix(&number),
                    _ => number,
                };
                Some(Placed {
                    direction,
                    phone,
                    line: String::new(),
                    extension: Some(ext.clone()),
                    service,
                })
            }
            Role::Unknown => None,
        }
    }

    pub fn is_inbound_context(&self, context: &str) -> bool {
        self.inbound_contexts.contains(context)
    }

    /// The role of a new leg.
    pub fn role(&self, ch: &Channel) -> Role {
        let endpoint = endpoint_of(ch);
        let endpoint = endpoint.as_deref();
        if let Some(e) = endpoint
            && self.is_trunk(e)
        {
            return Role::Customer(self.customer_number(ch));
        }
        if ch.origin == Origin::Inbound && !ch.local && self.is_inbound_context(&ch.context) {
            return Role::Customer(self.customer_number(ch));
        }
        match endpoint {
            Some(e) if self.is_extension(e) => Role::Agent(e.to_string()),
            // A Local / loopback channel named by something that is no number
            // (`Local/ID730151@route`, `Local/s@macro-dial`) is dialplan plumbing.
            Some(e) if ch.local && clean_number(e).len() != e.len() => Role::Unknown,
            Some(e) if !e.is_empty() => Role::Customer(self.customer_number(ch)),
            _ => {
                // No endpoint in the name (e.g. FreeSWITCH sofia/external/<number>@host):
                // an inbound leg is judged by who is calling, an outbound one by whom it
                // dials.
                let number = match ch.origin {
                    Origin::Inbound => &ch.caller_number,
                    Origin::Outbound => &ch.exten,
                };
                if number.is_empty() {
                    Role::Unknown
                } else if self.is_extension(number) {
                    Role::Agent(number.clone())
                } else {
                    Role::Customer(number.clone())
                }
            }
        }
    }

    /// The customer's number as this leg shows it: the caller for a leg calling in, the
    /// dialled number for a leg the PBX dials out on.
    fn customer_number(&self, ch: &Channel) -> String {
        let dialled = || {
            let endpoint = endpoint_of(ch);
            let from_endpoint = endpoint
                .as_deref()
                .filter(|e| e.bytes().any(|b| b.is_ascii_digit()))
                .unwrap_or("");
            if !ch.exten.is_empty() && ch.exten != "s" {
                ch.exten.clone()
            } else {
                from_endpoint.to_string()
            }
        };
        match ch.origin {
            Origin::Inbound if !ch.local => ch.caller_number.clone(),
            _ => dialled(),
        }
    }
}

/// The endpoint behind a leg without its `@context`: `100` for `PJSIP/100-0000001a`,
/// `Local/100@agents-00000002;1` and FreeSWITCH's `loopback/100-a`.
pub fn endpoint_of(ch: &Channel) -> Option<String> {
    if let Some(e) = ch.endpoint.as_deref() {
        let e = e.split('@').next().unwrap_or(e);
        return (!e.is_empty()).then(|| e.to_string());
    }
    let rest = ch.name.strip_prefix("loopback/")?;
    let base = rest
        .strip_suffix("-a")
        .or_else(|| rest.strip_suffix("-b"))
        .unwrap_or(rest);
    (!base.is_empty()).then(|| base.to_string())
}

/// The pair a Local / loopback half belongs to (its name without `;1`/`;2`, `-a`/`-b`),
/// and whether it is the half that runs the extension the pair is named after (Asterisk
/// `;2`, FreeSWITCH `-b`): when that half dials someone, the pair only wraps that call.
pub fn local_pair(name: &str) -> Option<(String, bool)> {
    if let Some((base, half)) = name.rsplit_once(';') {
        return Some((base.to_string(), half == "2"));
    }
    let (base, half) = name.rsplit_once('-')?;
    matches!(half, "a" | "b").then(|| (base.to_string(), half == "b"))
}

/// True for a PBX feature code an employee dials (`*97`, `*8`, `#21`): it starts with `*`
/// or `#`, which no phone number does.
pub fn is_feature_code(dialled: &str) -> bool {
    let d = dialled.trim();
    d.len() > 1 && (d.starts_with('*') || d.starts_with('#'))
}

/// The number in a dial string, when it names one: `89161234567@trunk`,
/// `trunk/sip:+79161234567@host`, `sofia/gateway/trunk/89161234567`. Empty when the
/// string holds no phone number (an endpoint name, an extension's `101`).
pub fn dialled_number(dial_string: &str) -> String {
    let s = dial_string.trim();
    let s = s.rsplit('/').next().unwrap_or(s);
    let s = ["sip:", "sips:", "tel:"]
        .iter()
        .find_map(|p| s.strip_prefix(p))
        .unwrap_or(s);
    let user = s.split(['@', ';', '^', ',']).next().unwrap_or("");
    let digits = user.bytes().filter(u8::is_ascii_digit).count();
    let plain = user
        .char_indices()
        .all(|(i, c)| c.is_ascii_digit() || (c == '+' && i == 0));
    if plain && digits >= 7 {
        user.to_string()
    } else {
        String::new()
    }
}

/// Keeps only what a phone number is made of: digits and a leading `+`.
pub fn clean_number(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.trim().chars().enumerate() {
        if c.is_ascii_digit() || (c == '+' && i == 0) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pbx::ChannelState;

    fn rules() -> Rules {
        let mut c = crate::config::Config::defaults().calls;
        c.trunk_endpoints = vec!["provider".into()];
        Rules::new(&c)
    }

    fn ch(name: &str, endpoint: Option<&str>, origin: Origin, context: &str) -> Channel {
        Channel {
            id: "1".into(),
            call: "1".into(),
            name: name.into(),
            caller_number: "79161234567".into(),
            exten: "74950000000".into(),
            context: context.into(),
            origin,
            state: ChannelState::Ring,
            local: name.starts_with("Local/") || name.starts_with("loopback/"),
            endpoint: endpoint.map(str::to_string),
            ..Channel::default()
        }
    }

    #[test]
    fn outside_line_prefixes_are_cut_from_numbers_not_from_extensions() {
        let mut c = crate::config::Config::defaults().calls;
        c.outbound_prefixes = vec!["9".into(), "90".into()];
        let r = Rules::new(&c);
        for (dialled, number) in [
            ("989161234567", "89161234567"),
            ("9089161234567", "89161234567"),
            ("9101", "9101"),
            ("9123456", "9123456"),
            ("91234567", "1234567"),
            ("+79161234567", "+79161234567"),
            ("89161234567", "89161234567"),
        ] {
            assert_eq!(r.strip_outbound_prefix(dialled), number, "{dialled}");
        }
        assert_eq!(
            rules().strip_outbound_prefix("989161234567"),
            "989161234567"
        );
    }

    #[test]
    fn dial_strings_give_their_number_when_they_hold_one() {
        for (dial, number) in [
            ("89161234567@trunk", "89161234567"),
            ("trunk/sip:+79161234567@provider.example", "+79161234567"),
            ("sofia/gateway/trunk/89161234567", "89161234567"),
            ("79161234567@pstn-sim", "79161234567"),
            ("101", ""),
            ("101@agents", ""),
            ("trunk", ""),
            ("trunk/sip:alice@example.com", ""),
            ("", ""),
        ] {
            assert_eq!(dialled_number(dial), number, "{dial}");
        }
    }

    #[test]
    fn feature_codes_start_with_a_star_or_a_hash() {
        for code in ["*97", "*8", "#21", " *72100 "] {
            assert!(is_feature_code(code), "{code}");
        }
        for not in ["*", "#", "", "97", "+79161234567", "s", "8*1"] {
            assert!(!is_feature_code(not), "{not}");
        }
    }

    #[test]
    fn legs_are_told_apart() {
        let r = rules();
        assert_eq!(
            r.role(&ch(
                "PJSIP/trunk-00000017",
                Some("trunk"),
                Origin::Inbound,
                "from-trunk"
            )),
            Role::Customer("79161234567".into())
        );
        assert_eq!(
            r.role(&ch(
                "PJSIP/100-00000018",
                Some("100"),
                Origin::Outbound,
                "agents-sip"
            )),
            Role::Agent("100".into())
        );
        assert_eq!(
            r.role(&ch(
                "Local/100@agents-00000002;1",
                Some("100@agents"),
                Origin::Outbound,
                "agents"
            )),
            Role::Agent("100".into())
        );
        let mut pstn = ch(
            "Local/79990001122@pstn-sim-00000003;1",
            Some("79990001122@pstn-sim"),
            Origin::Outbound,
            "pstn-sim",
        );
        pstn.exten = "79990001122".into();
        assert_eq!(r.role(&pstn), Role::Customer("79990001122".into()));
        // A trunk whose name is digits, listed as a trunk.
        assert!(matches!(
            r.role(&ch(
                "SIP/provider-0001",
                Some("provider"),
                Origin::Inbound,
                "x"
            )),
            Role::Customer(_)
        ));
        // FreeSWITCH: no endpoint in sofia/external/..., inbound context.
        assert_eq!(
            r.role(&ch(
                "sofia/external/79161234567@127.0.0.1",
                None,
                Origin::Inbound,
                "public"
            )),
            Role::Customer("79161234567".into())
        );
        assert!(r.is_extension("1000") && !r.is_extension("79161234567") && !r.is_extension("1"));
        // FreeSWITCH loopback halves carry the number in the name.
        let mut b = ch("loopback/79990001122-b", None, Origin::Inbound, "pstn-sim");
        b.caller_number = "agents".into();
        b.exten = "79990001122".into();
        assert_eq!(r.role(&b), Role::Customer("79990001122".into()));
        let a = ch("loopback/100-a", None, Origin::Outbound, "agents");
        assert_eq!(r.role(&a), Role::Agent("100".into()));
        assert_eq!(clean_number(" +7 (999) 000-11-22 "), "+79990001122");
    }

    #[test]
    fn the_pbx_lists_decide_over_the_digit_rule_and_the_configuration_over_them() {
        let mut r = rules();
        let peer = |name: &str| {
            ch(
                &format!("SIP/{name}-0000003e"),
                Some(name),
                Origin::Inbound,
                "from-internal",
            )
        };
        // By digits alone: a 9-digit peer is a customer, a 3-digit trunk an employee.
        assert!(matches!(r.role(&peer("150010001")), Role::Customer(_)));
        assert_eq!(r.role(&peer("800")), Role::Agent("800".into()));
        let mut list = Endpoints::default();
        list.add("150010001", crate::pbx::endpoints::Kind::Employee);
        list.add("800", crate::pbx::endpoints::Kind::Trunk);
        // A PBX employee that [calls] trunk_endpoints names a trunk.
        list.add("provider", crate::pbx::endpoints::Kind::Employee);
        r.set_endpoints(list);
        assert_eq!(r.role(&peer("150010001")), Role::Agent("150010001".into()));
        assert_eq!(r.role(&peer("800")), Role::Customer("79161234567".into()));
        assert!(matches!(r.role(&peer("provider")), Role::Customer(_)));
        assert!(r.is_extension("150010001") && !r.is_extension("800"));
        // Neither list nor configuration: the digit rule.
        assert_eq!(r.role(&peer("101")), Role::Agent("101".into()));
        // Dialling the 9-digit phone is an internal call.
        let placed = r
            .placed_by(&Role::Agent("101".into()), "150010001")
            .unwrap();
        assert_eq!(placed.direction, Direction::Internal);
        // A fresh list replaces the old one wholesale.
        r.set_endpoints(Endpoints::default());
        assert!(!r.is_extension("150010001") && r.is_extension("800"));
        // [calls] employee_endpoints over the PBX's trunk list (a chan_sip phone at a
        // fixed host) and over the digit rule.
        let mut c = crate::config::Config::defaults().calls;
        c.employee_endpoints = vec!["800".into(), "reception".into()];
        let mut r = Rules::new(&c);
        let mut list = Endpoints::default();
        list.add("800", crate::pbx::endpoints::Kind::Trunk);
        r.set_endpoints(list);
        assert_eq!(r.role(&peer("800")), Role::Agent("800".into()));
        assert_eq!(r.role(&peer("reception")), Role::Agent("reception".into()));
    }

    #[test]
    fn the_tracker_takes_the_pbx_lists_from_the_event_stream_and_keeps_them_over_a_reload() {
        let defaults = crate::config::Config::defaults().calls;
        let mut t = super::super::Tracker::new(&defaults);
        let mut list = Endpoints::default();
        list.add("150010001", crate::pbx::endpoints::Kind::Employee);
        t.handle(&crate::pbx::PbxEvent::now(crate::pbx::Event::Endpoints(
            list,
        )));
        assert!(t.rules().is_extension("150010001"));
        t.set_rules(Rules::new(&defaults));
        assert!(
            t.rules().is_extension("150010001"),
            "a [calls] reload keeps them"
        );
        t.handle(&crate::pbx::PbxEvent::now(crate::pbx::Event::Endpoints(
            Endpoints::default(),
        )));
        assert!(
            !t.rules().is_extension("150010001"),
            "a new list replaces them"
        );
    }
}
