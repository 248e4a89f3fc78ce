//! Descriptor values with `*` anywhere (`foo*`, `bar*b`, `/api/*/resource/*/action`):
//! each `*` matches any run of characters, possibly empty, and the literal pieces
//! must appear in order. Split once at load time; matching allocates nothing.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The literal pieces between the stars (first and last may be empty).
    parts: Vec<String>,
    fixed_len: usize,
}

impl Pattern {
    /// `None` when `value` has no `*`.
    pub fn new(value: &str) -> Option<Pattern> {
        if !value.contains('*') {
            return None;
        }
        let parts: Vec<String> = value.split('*').map(str::to_string).collect();
        let fixed_len = parts.iter().map(String::len).sum();
        Some(Pattern { parts, fixed_len })
    }

    pub fn matches(&self, value: &str) -> bool {
        // At least two parts: `new` only builds patterns with a star.
        let (first, last) = (&self.parts[0], &self.parts[self.parts.len() - 1]);
        if value.len() < self.fixed_len || !value.starts_with(first.as_str()) {
            return false;
        }
        if !value.ends_with(last.as_str()) {
            return false;
        }
        // The length check keeps the prefix and suffix from overlapping.
        let mut rest = &value[first.len()..value.len() - last.len()];
        for middle in &self.parts[1..self.parts.len() - 1] {
            match rest.find(middle.as_str()) {
                Some(i) => rest = &rest[i + middle.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, v: &str) -> bool {
        Pattern::new(p).unwrap().matches(v)
    }

    #[test]
    fn stars_match_anywhere_in_order() {
        assert!(Pattern::new("foo").is_none());
        // Trailing.
        assert!(m("foo*", "foo") && m("foo*", "foobar"));
        assert!(!m("foo*", "fo") && !m("foo*", "xfoo"));
        // Leading, middle, several.
        assert!(m("*bar", "foobar") && !m("*bar", "barx"));
        assert!(m("bar*b", "barb") && m("bar*b", "bar123b") && !m("bar*b", "bar"));
        assert!(m("foo*bar*baz", "foobarbaz") && m("foo*bar*baz", "foo1bar2baz"));
        assert!(!m("foo*bar*baz", "foobazbar") && !m("foo*bar*baz", "foo1baz"));
        assert!(m("/api/*/resource/*/action", "/api/v1/resource/123/action"));
        assert!(!m("/api/*/action", "/api/123/other"));
        // The prefix and suffix may not share characters.
        assert!(!m("ab*ba", "aba"));
        assert!(m("*", "") && m("**", "x") && m("a**b", "ab"));
    }

    #[test]
    fn hostile_values_stay_linear() {
        let p = Pattern::new("a*a*a*a*a*a*a*a*b").unwrap();
        let v = "a".repeat(1 << 20);
        assert!(!p.matches(&v));
        assert!(p.matches(&format!("{v}b")));
    }
}
