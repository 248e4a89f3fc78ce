//! Where a Service may send traffic. A destination is a request the gateway makes on a
//! tenant's behalf from inside the platform's network: pointed at `127.0.0.1:9901` it
//! reaches Envoy's own admin API (which can stop Envoy), at `169.254.169.254` the
//! cloud's metadata service (credentials). Such addresses are refused unless the
//! platform allows them: a Kubernetes cluster allows none of them by default (CIDRs by
//! flag), file mode allows loopback for local development.
use std::net::{IpAddr, Ipv6Addr};

/// An IP network, `10.0.0.0/8` or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let fix = "write it as address/prefix, e.g. 127.0.0.0/8 or fd00::/8";
        let (addr, prefix) = s
            .split_once('/')
            .ok_or(format!("{s:?} has no /prefix; {fix}"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} has no valid address; {fix}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = match prefix.parse() {
            Ok(p) if p <= max => p,
            _ => return Err(format!("{s:?} has a prefix outside 0..={max}; {fix}")),
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(v) => (u128::from(u32::from(v)), 32u32),
            IpAddr::V6(v) => (u128::from(v), 128u32),
        };
        let ((net, width), (ip, ip_width)) = (bits(self.addr), bits(ip));
        if width != ip_width {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        shift >= width || (net >> shift) == (ip >> shift)
    }
}

/// What a deployment allows destinations to be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestinationRules {
    /// Loopback addresses and `localhost` names (file mode: a developer's machine).
    pub allow_loopback: bool,
    /// Networks allowed even though they are loopback, link-local, unspecified or
    /// multicast.
    pub allowed: Vec<Cidr>,
}

impl DestinationRules {
    /// File mode: loopback allowed, the other special ranges refused.
    pub fn file_mode() -> Self {
        Self {
            allow_loopback: true,
            allowed: Vec::new(),
        }
    }

    /// Kubernetes mode: every special range refused unless listed.
    pub fn cluster(allowed: Vec<Cidr>) -> Self {
        Self {
            allow_loopback: false,
            allowed,
        }
    }

    /// `Err(why)` when `host` (an IP or a DNS name from a destination) is refused.
    pub fn check(&self, host: &str, is_ip: bool) -> Result<(), String> {
        if !is_ip {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return if self.allow_loopback {
                    Ok(())
                } else {
                    Err(format!(
                        "{host} is this machine (loopback); point the Service at the backend's own address"
                    ))
                };
            }
            if METADATA_NAMES.contains(&name.as_str()) {
                return Err(format!(
                    "{host} is the cloud metadata service, which hands out the platform's credentials; it is never a backend"
                ));
            }
            return Ok(());
        }
        let Ok(ip) = host.parse::<IpAddr>() else {
            return Ok(());
        };
        let ip = embedded_v4(ip).unwrap_or(ip.to_canonical());
        if self.allowed.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        let kind = match ip {
            _ if ip.is_loopback() => {
                if self.allow_loopback {
                    return Ok(());
                }
                "loopback (this machine: Envoy's admin API lives there)"
            }
            _ if ip.is_unspecified() || in_this_network(ip) => {
                "unspecified (connects to this machine)"
            }
            _ if ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) => {
                "multicast or broadcast"
            }
            IpAddr::V4(v) if v.is_link_local() => {
                "link-local (the cloud metadata service at 169.254.169.254 lives there)"
            }
            IpAddr::V6(v) if v.is_unicast_link_local() => "link-local",
            _ => return Ok(()),
        };
        Err(format!(
            "{host} is {kind}; the gateway refuses such destinations (a platform admin can allow a range with --allow-destination-cidrs)"
        ))
    }
}

/// Names cloud providers give their metadata service.
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
];

/// 0.0.0.0/8 is "this network": connecting to it reaches the local host.
fn in_this_network(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v) if v.octets()[0] == 0)
}

/// The IPv4 address inside NAT64 (64:ff9b::/96) and IPv4-compatible (::/96) forms,
/// which reach the IPv4 address they embed.
fn embedded_v4(ip: IpAddr) -> Option<IpAddr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    let compatible =
        s[..6] == [0, 0, 0, 0, 0, 0] && v6 != Ipv6Addr::UNSPECIFIED && v6 != Ipv6Addr::LOCALHOST;
    (nat64 || compatible)
        .then(|| IpAddr::from([(s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_mode_refuses_every_special_range_in_every_spelling() {
        let rules = DestinationRules::cluster(vec![]);
        for bad in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "fe80::1",
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
        ] {
            assert!(rules.check(bad, true).is_err(), "{bad}");
        }
        for bad in [
            "localhost",
            "LOCALHOST.",
            "x.localhost",
            "metadata.google.internal",
        ] {
            assert!(rules.check(bad, false).is_err(), "{bad}");
        }
        for ok in ["10.0.0.7", "fd00::7", "192.168.1.1"] {
            assert_eq!(rules.check(ok, true), Ok(()), "{ok}");
        }
        assert_eq!(rules.check("api.internal", false), Ok(()));
    }

    #[test]
    fn file_mode_allows_loopback_only_and_cidrs_open_ranges() {
        let file = DestinationRules::file_mode();
        assert_eq!(file.check("127.0.0.1", true), Ok(()));
        assert_eq!(file.check("localhost", false), Ok(()));
        assert!(file.check("169.254.169.254", true).is_err());
        let allowed = DestinationRules::cluster(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(allowed.check("127.0.0.5", true), Ok(()));
        assert!(allowed.check("::1", true).is_err());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }
}
