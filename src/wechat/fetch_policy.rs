//! Which addresses an agent's `media.url` may reach: public addresses, plus what
//! `BRIDGE_MEDIA_FETCH_ALLOWLIST` names (hosts or CIDRs).
//!
//! Why: the bridge downloads an agent's URL and sends the bytes to a customer, so without this an
//! agent (or whoever can write into a conversation) reads the bridge's own routes, internal
//! services and the cloud metadata endpoint (169.254.169.254) through WeChat. `media_fetch`
//! applies this policy to the address actually connected to (after DNS) and to every redirect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// True when `ip` is an ordinary, globally routed unicast address. Everything special-purpose is
/// refused: unspecified, loopback, private (RFC 1918, ULA), shared (100.64/10), link-local
/// (169.254/16: cloud metadata; fe80::/10), benchmarking, documentation, multicast, reserved and
/// broadcast. IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4, the old compatible
/// form) are judged by that IPv4 address, since that is where the packets end up.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0 // 0.0.0.0/8 "this network"
        || a == 10
        || (a == 100 && b & 0xc0 == 64) // 100.64.0.0/10 carrier-grade NAT
        || a == 127
        || (a == 169 && b == 254)
        || (a == 172 && b & 0xf0 == 16)
        || (a == 192 && b == 0 && (c == 0 || c == 2)) // IETF protocol assignments, TEST-NET-1
        || (a == 192 && b == 168)
        || (a == 198 && b & 0xfe == 18) // 198.18.0.0/15 benchmarking
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224; // multicast 224/4, reserved 240/4, broadcast 255.255.255.255
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4); // ::ffff:0:0/96
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7])); // 64:ff9b::/96 NAT64
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2])); // 2002::/16 6to4
    }
    let special = s[..6] == [0; 6] // ::, ::1 and the deprecated IPv4-compatible ::/96
        || s[0] & 0xfe00 == 0xfc00 // fc00::/7 unique local
        || s[0] & 0xffc0 == 0xfe80 // fe80::/10 link-local
        || s[0] & 0xff00 == 0xff00 // ff00::/8 multicast
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
        || s[..4] == [0x100, 0, 0, 0]; // 100::/64 discard
    !special
}

/// `BRIDGE_MEDIA_FETCH_ALLOWLIST`: hosts (exact names, case-insensitive) and networks an agent's
/// media URL may reach besides public addresses. Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchAllowlist {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
}

impl FetchAllowlist {
    /// Parses a comma-separated list: `files.internal,10.1.0.0/16,127.0.0.1/32,::1`. A bare
    /// address means that one address; empty entries are ignored. The error names the entry.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut allowlist = Self::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Ok(net) = entry.parse::<IpNet>() {
                allowlist.nets.push(net.trunc());
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                allowlist.nets.push(IpNet::from(ip));
            } else if is_host_name(entry) {
                allowlist.hosts.push(normalize_host(entry));
            } else {
                return Err(format!("{entry:?} is neither a host name nor an address or CIDR like 10.1.0.0/16"));
            }
        }
        Ok(allowlist)
    }

    /// Adds a host name (or an address) the platform itself names, such as Chatwoot's host.
    pub fn allow_host(&mut self, host: &str) {
        match host.parse::<IpAddr>() {
            Ok(ip) => self.nets.push(IpNet::from(ip)),
            Err(_) => self.hosts.push(normalize_host(host)),
        }
    }

    /// True when the host name was listed (then all its addresses are allowed).
    pub fn allows_host(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.hosts.contains(&host)
    }

    /// True when `ip` is in a listed network.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// True when a connection to `ip` is allowed: public or listed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allows_ip(ip)
    }
}

/// Letters, digits, `-` and `.`, labels of 1–63: what DNS and URLs accept as a host name.
fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Lower case without the root's trailing dot: `Files.Internal.` and `files.internal` are one host.
fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_purpose_addresses_are_not_public() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.255",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "2001:db8::1",
            "100::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(ip(s)), "{s} is not public");
        }
    }

    #[test]
    fn ordinary_addresses_are_public() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "100:0:0:1::1",
        ] {
            assert!(is_public(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn the_allowlist_takes_hosts_cidrs_and_single_addresses() {
        let list = FetchAllowlist::parse(" Files.Internal. , 10.1.0.0/16,127.0.0.1/32, ::1, 192.168.7.7 ,").unwrap();
        assert!(list.allows_host("files.internal"));
        assert!(list.allows_host("FILES.internal."));
        assert!(!list.allows_host("other.internal"));
        assert!(!list.allows_host("evil.files.internal"), "exact names, no suffix match");
        for allowed in ["10.1.255.1", "127.0.0.1", "::1", "192.168.7.7", "8.8.8.8"] {
            assert!(list.permits(ip(allowed)), "{allowed}");
        }
        for refused in ["10.2.0.1", "127.0.0.2", "192.168.7.8", "169.254.169.254"] {
            assert!(!list.permits(ip(refused)), "{refused}");
        }
        assert_eq!(FetchAllowlist::parse("").unwrap(), FetchAllowlist::default());
        // Host bits in a CIDR are dropped, as `ip route` does.
        assert!(FetchAllowlist::parse("10.1.2.3/16").unwrap().allows_ip(ip("10.1.200.1")));
    }

    #[test]
    fn malformed_allowlist_entries_are_refused_by_name() {
        for bad in ["10.0.0.0/33", "http://files.internal", "*.example.com", "files internal", "-bad.example", "a..b"] {
            let error = FetchAllowlist::parse(&format!("files.internal,{bad}")).expect_err(bad);
            assert!(error.contains(bad), "{error}");
        }
    }
}
