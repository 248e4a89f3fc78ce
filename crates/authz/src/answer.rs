//! What the gRPC server sends for a Check: a message built for the call, or an
//! identity's "allowed" answer encoded once and shared.
use std::sync::OnceLock;

use envoy_types::pb::envoy::service::auth::v3::CheckResponse;
use portcullis_contract::authz::IdentityHeaderNames;
use prost::Message;
use prost::bytes::Bytes;

/// What a Check answers: a message built for this call, or the bytes of an identity's
/// "allowed" answer encoded once ([`AnswerMemo`]). Building and encoding that answer
/// (a dozen small allocations, a map of metadata) was ~1.5 µs of the ~3.7 µs of CPU a
/// cache-hit Check cost beyond a gRPC health check (docs/benchmarks.md).
#[derive(Debug)]
pub enum Answer {
    Built(Box<CheckResponse>),
    Encoded(Bytes),
}

impl prost::Message for Answer {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        match self {
            Answer::Built(r) => r.encode_raw(buf),
            Answer::Encoded(b) => buf.put_slice(b),
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Never decoded by this service; done as a CheckResponse for completeness.
        if let Answer::Encoded(b) = self {
            *self = Answer::Built(Box::new(CheckResponse::decode(b.clone())?));
        }
        match self {
            Answer::Built(r) => r.merge_field(tag, wire_type, buf, ctx),
            Answer::Encoded(_) => unreachable!("turned into a message above"),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Answer::Built(r) => r.encoded_len(),
            Answer::Encoded(b) => b.len(),
        }
    }

    fn clear(&mut self) {
        *self = Answer::Built(Box::default());
    }
}

/// An identity's encoded "allowed" answer, with the settings it was made with: the
/// identity header names and the credential headers removed. The answer is a function
/// of the identity and those two alone (see `AuthzGrpc::answer`), so a Check whose
/// Route resolves to the same settings can send the same bytes, and one that resolves
/// to others (a Route forwarding the credential, say) builds its own.
#[derive(Default)]
pub struct AnswerMemo(OnceLock<Memo>);

struct Memo {
    names: IdentityHeaderNames,
    strip: Vec<String>,
    bytes: Bytes,
}

impl AnswerMemo {
    /// The bytes for these settings, made by `make` the first time; none when they were
    /// made for other settings (only the first settings are kept: one slot, bounded).
    pub fn get(
        &self,
        names: &IdentityHeaderNames,
        strip: &[&str],
        make: impl FnOnce() -> CheckResponse,
    ) -> Option<Bytes> {
        let memo = self.0.get_or_init(|| Memo {
            names: names.clone(),
            strip: strip.iter().map(|h| h.to_string()).collect(),
            bytes: Bytes::from(make().encode_to_vec()),
        });
        (memo.names == *names && memo.strip.iter().eq(strip.iter())).then(|| memo.bytes.clone())
    }
}

impl Clone for AnswerMemo {
    /// Empty: a changed copy of an identity must not keep the original's answer.
    fn clone(&self) -> Self {
        AnswerMemo::default()
    }
}

impl PartialEq for AnswerMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for AnswerMemo {}

impl std::fmt::Debug for AnswerMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let made = self.0.get().map_or(0, |m| m.bytes.len());
        write!(f, "AnswerMemo({made} bytes)")
    }
}
