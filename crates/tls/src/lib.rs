//! Certificates as the control plane accepts them: PEM chain and key parse, the key
//! matches the leaf, the leaf covers the Host's hostname and is within its validity
//! period. A [`Store`] keeps the last good certificate per Host, so a bad rotation
//! (a half-written file, the wrong key, an expired replacement) never takes HTTPS away:
//! the previous certificate keeps serving and the Host's status says what is wrong.
//! [`mtls`]: the TLS between Portcullis' own components.
#![forbid(unsafe_code)]

mod check;
pub mod mtls;
mod store;

pub use check::{EXPIRY_WARNING_DAYS, MAX_CA_CERTIFICATES, check, check_ca, check_client};
pub use store::{ServiceSource, Store};
