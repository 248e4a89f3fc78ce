//! Bounds on what the service keeps from answers it does not control (a JWKS, an
//! introspection response, a token's claims), so one odd or hostile answer cannot make
//! a cache entry, or the process, arbitrarily large.
use std::collections::BTreeMap;

/// Claims kept per identity (they are informational: decisions use user, account
/// and scopes).
pub const MAX_CLAIMS: usize = 32;
/// Bytes of a claim's name plus value; longer claims are dropped.
pub const MAX_CLAIM_BYTES: usize = 512;

/// At most [`MAX_CLAIMS`] string claims of at most [`MAX_CLAIM_BYTES`] each, in name
/// order.
pub fn bounded_claims<'a>(
    claims: impl IntoIterator<Item = (&'a String, &'a serde_json::Value)>,
) -> BTreeMap<String, String> {
    claims
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_str()?)))
        .filter(|(k, v)| k.len() + v.len() <= MAX_CLAIM_BYTES)
        .take(MAX_CLAIMS)
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect()
}

/// The body of `resp`, refused (with `url` and the cap in the message) past `max`
/// bytes, whatever Content-Length says.
pub async fn read_capped(
    mut resp: reqwest::Response,
    url: &str,
    max: usize,
) -> Result<Vec<u8>, String> {
    let too_big = || format!("{url}: answer larger than {max} bytes");
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        if body.len() + chunk.len() > max {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_capped_in_number_and_size_and_only_strings_kept() {
        let mut many: BTreeMap<String, serde_json::Value> = (0..100)
            .map(|i| (format!("c{i:03}"), serde_json::Value::from("v")))
            .collect();
        many.insert("a-huge".into(), "x".repeat(10_000).into());
        many.insert("a-number".into(), 7.into());
        let kept = bounded_claims(&many);
        assert_eq!(kept.len(), MAX_CLAIMS);
        assert!(!kept.contains_key("a-huge") && !kept.contains_key("a-number"));
        assert!(kept.contains_key("c000"));
    }
}
