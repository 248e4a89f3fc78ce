//! Header regexes as Envoy will run them: RE2 syntax, ASCII classes, and a bounded
//! program size.
//!
//! Envoy compiles `safe_regex` with RE2 and refuses the whole route configuration when
//! a program is larger than its `re2.max_program_size.error_level` runtime setting
//! (100 instructions by default): one tenant's regex would then block every other
//! tenant's edits. RE2 is not available here, so this estimates the program size from
//! the parsed pattern with RE2's compilation rules, rounding every choice up: an
//! accepted pattern compiles to at most [`MAX_PROGRAM`] instructions.
use regex_syntax::{
    ParserBuilder,
    hir::{Class, Hir, HirKind},
};

/// Largest estimated RE2 program accepted; below Envoy's default error level (100),
/// leaving room for the instructions RE2 adds around every program.
pub const MAX_PROGRAM: usize = 80;
/// Longest pattern accepted, before any other check.
pub const MAX_PATTERN_LEN: usize = 512;

/// Checks a header regex; the error says what to change.
pub fn check(pattern: &str) -> Result<(), String> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!(
            "is {} bytes long; keep regular expressions under {MAX_PATTERN_LEN} bytes",
            pattern.len()
        ));
    }
    // RE2's \w, \d, \s and [[:alpha:]] are ASCII; Unicode-aware parsing would accept
    // property classes RE2 does not know (\p{Emoji}) and overestimate the rest.
    let hir = ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .nest_limit(32)
        .build()
        .parse(pattern)
        .map_err(|e| {
            format!("invalid regular expression (RE2 syntax, ASCII classes; no \\p{{…}} or look-around): {e}")
        })?;
    let size = program_size(&hir);
    if size > MAX_PROGRAM {
        return Err(format!(
            "compiles to about {size} RE2 instructions, over the {MAX_PROGRAM} Envoy accepts; simplify it (fewer alternatives, smaller {{n,m}} counts) or match a prefix/exact value"
        ));
    }
    Ok(())
}

/// An upper bound of the instructions RE2 emits for `hir`, saturating.
pub fn program_size(hir: &Hir) -> usize {
    match hir.kind() {
        HirKind::Empty => 1,
        HirKind::Literal(lit) => lit.0.len(),
        // One instruction per byte range; RE2 may share some, never needs more.
        HirKind::Class(Class::Bytes(c)) => c.ranges().len().max(1),
        HirKind::Class(Class::Unicode(c)) => c
            .ranges()
            .iter()
            .map(|r| {
                regex_syntax::utf8::Utf8Sequences::new(r.start(), r.end())
                    .map(|s| s.len())
                    .sum::<usize>()
            })
            .sum::<usize>()
            .max(1),
        HirKind::Look(_) => 1,
        HirKind::Capture(c) => program_size(&c.sub).saturating_add(2),
        HirKind::Concat(parts) => parts
            .iter()
            .fold(0usize, |n, p| n.saturating_add(program_size(p))),
        HirKind::Alternation(parts) => parts.iter().fold(parts.len().saturating_sub(1), |n, p| {
            n.saturating_add(program_size(p))
        }),
        HirKind::Repetition(rep) => {
            let sub = program_size(&rep.sub);
            let copies = match rep.max {
                // x{n,}: n copies then a loop around one more.
                None => rep.min as usize + 1,
                Some(max) => max as usize,
            };
            // One split instruction per optional or repeated copy.
            let splits = match rep.max {
                None => 1,
                Some(max) => (max - rep.min) as usize,
            };
            sub.saturating_mul(copies.max(1)).saturating_add(splits)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_patterns_pass_and_counted_repetition_is_expensive() {
        for ok in ["^v[0-9]+$", "canary|beta", "[a-z0-9-]{1,8}", r"\d+\.\d+"] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        let big = check("a{100}").unwrap_err();
        assert!(big.contains("RE2 instructions"), "{big}");
        assert!(check("(ab|cd|ef|gh){20}").is_err());
    }

    #[test]
    fn what_re2_refuses_is_refused_here() {
        for bad in [r"(?=x)", r"\p{Emoji}", r"(a)\1", "(", &"a".repeat(600)] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_are_monotonic_in_the_pattern() {
        let size = |p: &str| {
            program_size(
                &ParserBuilder::new()
                    .unicode(false)
                    .utf8(false)
                    .build()
                    .parse(p)
                    .unwrap(),
            )
        };
        assert!(size("abc") < size("abcd"));
        assert!(size("a{2}") < size("a{3}"));
        assert!(size("ab|cd") < size("ab|cd|ef"));
        assert_eq!(size("a{4294967295}"), 4_294_967_295);
    }
}
