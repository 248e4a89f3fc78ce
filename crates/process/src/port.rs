//! A free loopback port for a process that cannot bind port 0 and report what it got
//! (Envoy's admin and HTTPS ports in `portcullis up`, Redis and PostgreSQL in tests).
//!
//! Picked below the kernel's ephemeral range (`ip_local_port_range`, 32768–60999 by
//! default). Every outgoing connection and every bind to port 0 takes its port from
//! that range, so a port picked there and released can be taken by any socket before
//! the process binds it (seen in CI: `--metrics-addr 127.0.0.1:32859: cannot listen
//! (Address already in use)`). Below it, only another pick can collide: picks are
//! random over up to 12,000 ports and each is checked free.
use std::hash::BuildHasher;
use std::ops::Range;

const RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// A loopback port that was free a moment ago, below the ephemeral range when there
/// is room; else one the kernel gives for port 0.
pub fn free_loopback_port() -> std::io::Result<u16> {
    let range = std::fs::read_to_string(RANGE_FILE)
        .ok()
        .and_then(|text| below_ephemeral(&text));
    let Some(range) = range else {
        return kernel_pick();
    };
    let width = u64::from(range.end - range.start);
    for attempt in 0u32..10_000 {
        // A fresh random seed per call (std's `RandomState`), so processes picking at
        // the same moment spread their picks.
        let r = std::hash::RandomState::new().hash_one(attempt);
        let port = range.start + (r % width) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    kernel_pick()
}

fn kernel_pick() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Up to 12,000 ports just below the ephemeral range `text` gives ("32768\t60999"),
/// never below 1024; `None` when there is no room or the text is not a range.
fn below_ephemeral(text: &str) -> Option<Range<u16>> {
    let low: u16 = text.split_whitespace().next()?.parse().ok()?;
    let start = low.saturating_sub(12_000).max(1024);
    (start < low).then_some(start..low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_below_the_ephemeral_range_and_the_port_is_free() {
        assert_eq!(below_ephemeral("32768\t60999\n"), Some(20768..32768));
        assert_eq!(below_ephemeral("5000 60999"), Some(1024..5000));
        assert_eq!(below_ephemeral("1024 60999"), None, "no room below");
        assert_eq!(below_ephemeral("garbage"), None);
        let port = free_loopback_port().unwrap();
        if let Some(range) = std::fs::read_to_string(RANGE_FILE)
            .ok()
            .and_then(|t| below_ephemeral(&t))
        {
            assert!(range.contains(&port), "{port} not in {range:?}");
        }
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the picked port binds");
    }
}
