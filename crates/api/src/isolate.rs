//! Defence in depth: a bug that panics on one object must cost that object, not the
//! process. Every replica of the control plane reads the same objects, so a panic that
//! escaped would crash-loop all of them on one bad manifest and stop every tenant's
//! edits. Validation and translation run each object's work through [`isolate`]; the
//! object is then refused with reason `InternalError` and the rest is served.
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `f`; a panic becomes `Err` with its message.
pub fn isolate<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into())
    })
}

/// The field an internal error is reported on.
pub const INTERNAL_FIELD: &str = "internal";

/// The message for an object whose processing panicked.
pub fn internal_message(stage: &str, panic: &str) -> String {
    format!(
        "{stage} failed on this object ({panic}); this is a Portcullis bug, please report it with the object; the rest of the configuration is served"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_values_pass_through() {
        assert_eq!(isolate(|| 7), Ok(7));
        let e = isolate(|| -> u32 { panic!("boom {}", 1) }).unwrap_err();
        assert_eq!(e, "boom 1");
        let e = isolate(|| {
            let v: Vec<u8> = Vec::new();
            v[3]
        })
        .unwrap_err();
        assert!(e.contains("index out of bounds"), "{e}");
    }
}
