//! What one ADS stream may ask of the server. Any process that reaches the xDS port
//! can open streams; without bounds one could grow a stream's state (type URLs,
//! subscribed names, node ids, NACK messages) until the control plane runs out of
//! memory, for every Envoy it serves. A request past a bound ends its stream with
//! `RESOURCE_EXHAUSTED` or `INVALID_ARGUMENT` and a message saying which bound.
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};

/// Distinct type URLs one stream may subscribe to (Envoy uses 4 to 6).
pub const MAX_TYPES: usize = 16;
/// Resource names one stream may hold subscribed per type.
pub const MAX_NAMES: usize = 100_000;
/// Longest type URL or resource name.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest node id accepted, and longest node cluster name kept.
pub const MAX_NODE_ID_LEN: usize = 256;
/// Longest NACK message kept (Envoy may quote the whole rejected resource).
pub const MAX_NACK_MESSAGE: usize = 4096;
/// Largest request accepted; responses may be larger (a big route table).
pub const MAX_REQUEST_SIZE: usize = 4 * 1024 * 1024;

/// Why a request is refused, if it is; `known_types` are the stream's types so far,
/// `subscribed` the names it already holds for this request's type (Delta).
pub fn check_names(
    type_url: &str,
    known_types: usize,
    is_new_type: bool,
    names: &[String],
    subscribed: usize,
) -> Result<(), tonic::Status> {
    if type_url.len() > MAX_NAME_LEN {
        return Err(tonic::Status::invalid_argument(format!(
            "type_url is {} bytes, over {MAX_NAME_LEN}",
            type_url.len()
        )));
    }
    if is_new_type && known_types >= MAX_TYPES {
        return Err(tonic::Status::resource_exhausted(format!(
            "a stream may subscribe to at most {MAX_TYPES} types"
        )));
    }
    if let Some(n) = names.iter().find(|n| n.len() > MAX_NAME_LEN) {
        return Err(tonic::Status::invalid_argument(format!(
            "resource name of {} bytes, over {MAX_NAME_LEN}",
            n.len()
        )));
    }
    if subscribed.saturating_add(names.len()) > MAX_NAMES {
        return Err(tonic::Status::resource_exhausted(format!(
            "a stream may subscribe to at most {MAX_NAMES} names per type"
        )));
    }
    Ok(())
}

pub fn check_sotw(
    req: &DiscoveryRequest,
    known_types: usize,
    is_new_type: bool,
) -> Result<(), tonic::Status> {
    check_names(
        &req.type_url,
        known_types,
        is_new_type,
        &req.resource_names,
        0,
    )
}

pub fn check_delta(
    req: &DeltaDiscoveryRequest,
    known_types: usize,
    is_new_type: bool,
    subscribed: usize,
) -> Result<(), tonic::Status> {
    check_names(
        &req.type_url,
        known_types,
        is_new_type,
        &req.resource_names_subscribe,
        subscribed,
    )?;
    if req.initial_resource_versions.len() > MAX_NAMES {
        return Err(tonic::Status::resource_exhausted(format!(
            "at most {MAX_NAMES} initial resource versions"
        )));
    }
    Ok(())
}

/// `text` cut to at most `max` bytes at a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bound_refuses_with_its_reason() {
        let many: Vec<String> = (0..=MAX_NAMES).map(|i| i.to_string()).collect();
        assert!(check_names("t", 0, true, &[], 0).is_ok());
        let e = check_names("t", MAX_TYPES, true, &[], 0).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(
            check_names("t", MAX_TYPES, false, &[], 0).is_ok(),
            "known types stay usable"
        );
        assert!(check_names("t", 0, true, &many, 0).is_err());
        assert!(check_names("t", 0, false, &["a".into()], MAX_NAMES).is_err());
        assert!(check_names(&"t".repeat(2000), 0, true, &[], 0).is_err());
        assert!(check_names("t", 0, true, &["n".repeat(2000)], 0).is_err());
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
