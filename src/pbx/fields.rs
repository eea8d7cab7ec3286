//! An ordered list of `Key: Value` fields stored in one string, shared by the AMI and ESL
//! codecs.
//!
//! Both protocols are lists of headers where order matters, keys repeat (several
//! `Variable:` headers in an AMI action, JSON arrays in an ESL event) and keys are matched
//! without regard to case. Keeping every key and value in one `String` with offsets costs
//! two allocations per message instead of two per header, which is what makes a
//! `VarSet` flood cheap.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Span {
    key: (u32, u32),
    value: (u32, u32),
}

/// Ordered fields; lookups ignore ASCII case; repeated keys are all kept.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Fields {
    text: String,
    spans: Vec<Span>,
}

impl Fields {
    pub fn with_capacity(bytes: usize, fields: usize) -> Fields {
        Fields {
            text: String::with_capacity(bytes),
            spans: Vec::with_capacity(fields),
        }
    }

    /// Appends one field.
    pub fn push(&mut self, key: &str, value: &str) {
        let k0 = self.text.len();
        self.text.push_str(key);
        let k1 = self.text.len();
        self.text.push_str(value);
        let v1 = self.text.len();
        self.spans.push(Span {
            key: (k0 as u32, k1 as u32),
            value: (k1 as u32, v1 as u32),
        });
    }

    /// Appends a field whose value is written by `write` (used for decoding in place).
    pub fn push_with(&mut self, key: &str, write: impl FnOnce(&mut String)) {
        let k0 = self.text.len();
        self.text.push_str(key);
        let k1 = self.text.len();
        write(&mut self.text);
        let v1 = self.text.len();
        self.spans.push(Span {
            key: (k0 as u32, k1 as u32),
            value: (k1 as u32, v1 as u32),
        });
    }

    fn at(&self, span: &Span) -> (&str, &str) {
        (
            &self.text[span.key.0 as usize..span.key.1 as usize],
            &self.text[span.value.0 as usize..span.value.1 as usize],
        )
    }

    /// The first value under `key` (ASCII case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.spans.iter().find_map(|s| {
            let (k, v) = self.at(s);
            k.eq_ignore_ascii_case(key).then_some(v)
        })
    }

    /// Every value under `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.spans.iter().filter_map(move |s| {
            let (k, v) = self.at(s);
            k.eq_ignore_ascii_case(key).then_some(v)
        })
    }

    /// The first value under `key`, with empty values and Asterisk's `<unknown>` as `None`.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty() && *v != "<unknown>")
    }

    /// `get` or the empty string.
    pub fn str(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans.iter().map(|s| self.at(s))
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The first field, which names an AMI message (`Event:`, `Response:`).
    pub fn first(&self) -> Option<(&str, &str)> {
        self.spans.first().map(|s| self.at(s))
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_case_and_repeats_are_kept_in_order() {
        let mut f = Fields::default();
        f.push("Event", "VarSet");
        f.push("Variable", "A=1");
        f.push("variable", "B=2");
        f.push("Empty", "");
        f.push("CallerIDNum", "<unknown>");
        assert_eq!(f.get("EVENT"), Some("VarSet"));
        assert_eq!(f.get_all("VARIABLE").collect::<Vec<_>>(), ["A=1", "B=2"]);
        assert_eq!(f.get("empty"), Some(""));
        assert_eq!(f.value("empty"), None);
        assert_eq!(f.value("calleridnum"), None);
        assert_eq!(f.get("missing"), None);
        assert_eq!(f.len(), 5);
        assert_eq!(f.first(), Some(("Event", "VarSet")));
    }
}
