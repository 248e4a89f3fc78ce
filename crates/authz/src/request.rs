//! The part of Envoy's `CheckRequest` this service reads (the request's headers and
//! the Route's `context_extensions`), decoded without the rest. The generated message
//! decodes both maps into `HashMap`s (a hasher seeded and a table grown per map) and
//! every other field too: that was a tenth of a cache-hit Check's CPU.
//!
//! The field numbers are those of `envoy.service.auth.v3.CheckRequest`; a protobuf
//! `map<string, string>` is on the wire a repeated message of key (1) and value (2),
//! which is what [`Pair`] decodes. Fields this service does not read are skipped
//! unparsed, so a malformed one there (a non-UTF-8 `path`, say) is not refused as the
//! generated message would refuse it; the two maps are validated the same way, except
//! that a map entry must be sent length-delimited, as protobuf says (prost's map
//! decoding also takes one tagged with another wire type).
use std::collections::HashMap;

/// Looking a key up in a decoded map.
pub trait Pairs {
    /// Named apart from `get`, which a slice already has with another meaning.
    fn value(&self, key: &str) -> Option<&str>;
}

impl Pairs for HashMap<String, String> {
    fn value(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

impl Pairs for [Pair] {
    /// The last entry of `key`, as a protobuf map keeps the last one decoded.
    fn value(&self, key: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }
}

/// `CheckRequest`, with only `attributes` (1).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckCall {
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<Attributes>,
}

/// `AttributeContext`: `request` (4) and `context_extensions` (10).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Attributes {
    #[prost(message, optional, tag = "4")]
    pub request: Option<Request>,
    #[prost(message, repeated, tag = "10")]
    pub context_extensions: Vec<Pair>,
}

/// `AttributeContext.Request`: `http` (2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(message, optional, tag = "2")]
    pub http: Option<Http>,
}

/// `AttributeContext.HttpRequest`: `headers` (3).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Http {
    #[prost(message, repeated, tag = "3")]
    pub headers: Vec<Pair>,
}

/// One entry of a `map<string, string>`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Pair {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

impl CheckCall {
    pub fn headers(&self) -> &[Pair] {
        self.attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .map_or(&[], |h| &h.headers)
    }

    pub fn context(&self) -> &[Pair] {
        self.attributes
            .as_ref()
            .map_or(&[], |a| &a.context_extensions)
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
