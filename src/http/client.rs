//! Who a request comes from, for the failure budgets of the console's sign-in and the admin
//! API: the peer address, or, when the peer is one of `admin.trusted_proxies`, the address that
//! proxy forwarded (`X-Forwarded-For`, read from the right: the entries a client wrote itself
//! sit left of what the proxies appended). IPv6 clients count by their /64.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

/// Failed attempts (console sign-ins and admin API calls with a wrong token, together) a client
/// may make per window; after them it is refused without a check until the window ends.
pub const MAX_FAILURES: u64 = 10;
pub const FAILURE_WINDOW_SECS: u64 = 15 * 60;

/// The proxies whose `X-Forwarded-For` is believed; empty: none (the peer is the client).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// `10.0.0.0/8, 192.168.1.5, fd00::/8`: addresses or CIDR ranges, comma-separated.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        crate::config::networks(list).map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The budget key of the client behind `request`.
    pub fn client_key(&self, request: &HttpRequest) -> String {
        let Some(peer) = request.peer_addr().map(|a| canonical(a.ip())) else {
            return "unknown".into();
        };
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        key_of(self.client(peer, &forwarded))
    }

    /// Walks back from the peer through trusted proxies: the first address not trusted is the
    /// client; an entry that is not an address stops the walk there (the last trusted hop).
    fn client(&self, peer: IpAddr, forwarded: &[&str]) -> IpAddr {
        let mut client = peer;
        for entry in forwarded.iter().rev() {
            if !self.trusts(client) {
                break;
            }
            match entry.parse::<IpAddr>() {
                Ok(ip) => client = canonical(ip),
                Err(_) => break,
            }
        }
        client
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// An IPv6 address by its /64, which one host usually holds whole (a budget per /128 would be
/// one per address it picks).
fn key_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        IpAddr::V4(v4) => v4.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(key_of(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            key_of(ip("2001:db8:1:2:ffff:1:2:3")),
            key_of(ip("2001:db8:1:2::9"))
        );
        assert_ne!(key_of(ip("2001:db8:1:3::1")), key_of(ip("2001:db8:1:2::1")));
        assert_eq!(key_of(ip("203.0.113.7")), "203.0.113.7");
        assert_eq!(key_of(canonical(ip("::ffff:203.0.113.7"))), "203.0.113.7");
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let none = TrustedProxies::default();
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.5").expect("parses");
        let forwarded = ["198.51.100.9", "203.0.113.7"];
        // Not trusted: the header is the client's own words.
        assert_eq!(none.client(ip("10.0.0.2"), &forwarded), ip("10.0.0.2"));
        assert_eq!(
            proxies.client(ip("198.51.100.1"), &forwarded),
            ip("198.51.100.1")
        );
        // Trusted: the rightmost address the proxy appended, not what the client wrote left of it.
        assert_eq!(
            proxies.client(ip("10.0.0.2"), &forwarded),
            ip("203.0.113.7")
        );
        // Through two trusted hops.
        assert_eq!(
            proxies.client(ip("10.0.0.2"), &["203.0.113.7", "192.168.1.5"]),
            ip("203.0.113.7")
        );
        // A garbled entry stops the walk at the last trusted hop.
        assert_eq!(
            proxies.client(ip("10.0.0.2"), &["203.0.113.7", "garbage"]),
            ip("10.0.0.2")
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.internal").is_err());
        assert!(TrustedProxies::parse(" ").expect("empty").0.is_empty());
    }
}
