//! An ordered list of `Key: Value` fields stored in one string, shared by the AMI and ESL
//! codecs.
//!
//! Both protocols are lists of headers where order matters, keys repeat (several
//! `Variable:` headers in an AMI action, JSON arrays in an ESL event) and keys are matched
//! without regard to case. Keeping every key and value in one `String` with offsets costs
//! two allocations per message instead of two per header, which is what makes a
//! `VarSet` flood cheap.

use std::fmt;
use std::ops::Range;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Span {
    key: (u32, u32),
    value: (u32, u32),
}

/// Ordered fields; lookups ignore ASCII case; repeated keys are all kept. Two `Fields` are
/// equal when they hold the same fields in the same order, however their text is laid out.
#[derive(Clone, Default)]
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

    /// Fields over `text` as it is, to which [`push_span`](Self::push_span) adds fields: a
    /// decoder that keeps the message's own text (AMI) copies it once instead of field by
    /// field.
    pub(crate) fn over(text: String, fields: usize) -> Fields {
        Fields {
            text,
            spans: Vec::with_capacity(fields),
        }
    }

    /// Appends the field whose key and value are these byte ranges of the text given to
    /// [`over`](Self::over). Panics unless they lie on character boundaries.
    pub(crate) fn push_span(&mut self, key: Range<usize>, value: Range<usize>) {
        for at in [key.start, key.end, value.start, value.end] {
            assert!(
                self.text.is_char_boundary(at),
                "field span off a char boundary"
            );
        }
        assert!(key.start <= key.end && value.start <= value.end);
        self.spans.push(Span {
            key: (key.start as u32, key.end as u32),
            value: (value.start as u32, value.end as u32),
        });
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
            self.value_at(span),
        )
    }

    fn value_at(&self, span: &Span) -> &str {
        &self.text[span.value.0 as usize..span.value.1 as usize]
    }

    /// Whether the span's key is `key`, ignoring ASCII case. An event is looked up for a
    /// dozen keys among a dozen or more fields, most of them absent: lengths first, then
    /// bytes, with no string slicing until a key matches.
    fn key_is(&self, span: &Span, key: &[u8]) -> bool {
        let (start, end) = (span.key.0 as usize, span.key.1 as usize);
        end - start == key.len() && self.text.as_bytes()[start..end].eq_ignore_ascii_case(key)
    }

    /// The first value under `key` (ASCII case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        let key = key.as_bytes();
        self.spans
            .iter()
            .find(|s| self.key_is(s, key))
            .map(|s| self.value_at(s))
    }

    /// Every value under `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.spans
            .iter()
            .filter(move |s| self.key_is(s, key.as_bytes()))
            .map(|s| self.value_at(s))
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

impl PartialEq for Fields {
    fn eq(&self, other: &Fields) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Fields {}

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

    #[test]
    fn fields_over_a_text_equal_pushed_fields_with_the_same_order() {
        let mut over = Fields::over("Event: Hangup\r\nCause:16\r\nbare\r\n".into(), 2);
        over.push_span(0..5, 7..13);
        over.push_span(15..20, 21..23);
        over.push_span(25..29, 29..29);
        let mut pushed = Fields::default();
        pushed.push("Event", "Hangup");
        pushed.push("Cause", "16");
        pushed.push("bare", "");
        assert_eq!(over, pushed);
        assert_eq!(over.get("CAUSE"), Some("16"));
        pushed.push("Cause", "17");
        assert_ne!(over, pushed);
        let mut swapped = Fields::default();
        swapped.push("Cause", "16");
        swapped.push("Event", "Hangup");
        swapped.push("bare", "");
        assert_ne!(over, swapped);
    }

    #[test]
    #[should_panic(expected = "char boundary")]
    fn a_span_inside_a_character_is_refused() {
        let mut f = Fields::over("é: x".into(), 1);
        f.push_span(0..1, 4..5);
    }
}
