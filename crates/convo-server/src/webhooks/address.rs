//! Where a webhook may be sent (CONTRACT §8): an absolute `https` URL (plain `http` only when
//! the server allows it) whose address is global unicast, unless an operator's
//! `--webhook-allow-net CIDR` covers it. IP literals are checked here in whatever spelling the
//! URL parser accepts (`2130706433`, `0x7f.1`, `[::ffff:127.0.0.1]` all parse to the address
//! they mean); host names are checked again after every resolution, before a socket opens,
//! by the delivery client's resolver, which uses `allowed` on each address it returns.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use url::{Host, Url};

/// A network an operator lets webhooks reach (`--webhook-allow-net`): `ADDR/PREFIX`, or one
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a network: {0:?} (expected ADDRESS/PREFIX, such as 127.0.0.0/8 or ::1/128)")]
pub struct BadCidr(String);

impl FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadCidr(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net = IpAddr::from_str(addr).map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        Ok(Self { net, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let bits = usize::from(prefix);
    let (whole, rest) = (bits / 8, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

/// Whether a delivery may connect to `ip`: a global unicast address, or one in `allow`.
pub fn allowed(ip: IpAddr, allow: &[Cidr]) -> bool {
    is_global(ip) || allow.iter().any(|net| net.contains(ip))
}

/// Global unicast: none of the special-purpose ranges (RFC 6890 and its updates) that name this
/// host, a private or shared network, a link, documentation, benchmarks, multicast or the
/// reserved space. IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4)
/// are judged by that address.
pub fn is_global(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                   // "this network", 0.0.0.0/8
        || a == 10                             // private
        || a == 127                            // loopback
        || (a == 100 && (64..128).contains(&b)) // shared (carrier-grade NAT), 100.64/10
        || (a == 169 && b == 254)              // link-local (cloud metadata: 169.254.169.254)
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)      // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)      // documentation
        || (a == 192 && b == 88 && c == 99)    // 6to4 relay anycast (deprecated)
        || (a == 192 && b == 168)              // private
        || (a == 198 && (b == 18 || b == 19))  // benchmarking
        || (a == 198 && b == 51 && c == 100)   // documentation
        || (a == 203 && b == 0 && c == 113)    // documentation
        || a >= 224) // multicast, reserved 240/4 and broadcast
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    match s {
        // ::/96: unspecified, loopback and the deprecated IPv4-compatible form.
        [0, 0, 0, 0, 0, 0, _, _] => false,
        // NAT64 (64:ff9b::/96): the IPv4 address it reaches.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => is_global_v4(embedded(hi, lo)),
        // 6to4 (2002::/16): the IPv4 address of the relay it names.
        [0x2002, hi, lo, ..] => is_global_v4(embedded(hi, lo)),
        [first, second, ..] => {
            !((first & 0xff00) == 0xff00              // multicast
                || (first & 0xfe00) == 0xfc00         // unique local, fc00::/7
                || (first & 0xffc0) == 0xfe80         // link-local, fe80::/10
                || (first & 0xffc0) == 0xfec0         // site-local (deprecated), fec0::/10
                || (first == 0x2001 && second == 0x0db8) // documentation
                || (first == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only, 100::/64
                || (first == 0x2001 && second < 0x0200)) // IETF protocol assignments, 2001::/23
        }
    }
}

/// Why a target URL is refused (the 400's message names it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("target_url must be an absolute URL")]
    NotAUrl,
    #[error("target_url must use https")]
    NotHttps,
    #[error("target_url must name a host")]
    NoHost,
    #[error("target_url must not carry a user name or password")]
    Credentials,
    #[error("target_url's host is not a global address")]
    AddressNotAllowed,
}

/// Checks a `target_url` as given at registration: the URL, its scheme, and its host when it
/// is an address (or a name that always means this host). A name is resolved only when a
/// delivery is attempted.
pub fn check_target(text: &str, allow_http: bool, allow: &[Cidr]) -> Result<Url, TargetError> {
    let url = Url::parse(text).map_err(|_| TargetError::NotAUrl)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        _ => return Err(TargetError::NotHttps),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    let ip = match url.host() {
        None => return Err(TargetError::NoHost),
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        // RFC 6761: localhost and its subdomains are this host, whatever a resolver says.
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                return Ok(url);
            }
        }
    };
    if allowed(ip, allow) {
        Ok(url)
    } else {
        Err(TargetError::AddressNotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling of a non-global address the contract names, and more, refused.
    #[test]
    fn non_global_targets_are_refused_in_every_spelling() {
        let refused = [
            "https://127.0.0.1/hook",
            "https://127.1/hook",
            "https://2130706433/hook",
            "https://0x7f.1/hook",
            "https://0177.0.0.1/hook",
            "https://0x7f000001/hook",
            "https://[::1]/hook",
            "https://[::ffff:127.0.0.1]/hook",
            "https://[::ffff:7f00:1]/hook",
            "https://[::127.0.0.1]/hook",
            "https://[64:ff9b::a00:1]/hook",
            "https://[2002:c0a8:101::1]/hook",
            "https://10.0.0.1/hook",
            "https://172.16.0.1/hook",
            "https://172.31.255.255/hook",
            "https://192.168.1.1/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/hook",
            "https://0.0.0.0/hook",
            "https://0/hook",
            "https://224.0.0.1/hook",
            "https://255.255.255.255/hook",
            "https://240.0.0.1/hook",
            "https://198.18.0.1/hook",
            "https://192.0.2.1/hook",
            "https://[fc00::1]/hook",
            "https://[fd12:3456::1]/hook",
            "https://[fe80::1]/hook",
            "https://[ff02::1]/hook",
            "https://[::]/hook",
            "https://[2001:db8::1]/hook",
            "https://localhost/hook",
            "https://LOCALHOST./hook",
            "https://api.localhost/hook",
        ];
        for url in refused {
            assert_eq!(
                check_target(url, false, &[]),
                Err(TargetError::AddressNotAllowed),
                "{url}"
            );
        }
    }

    #[test]
    fn global_targets_and_names_pass_registration() {
        for url in [
            "https://hooks.example.com/nexhealth",
            "https://93.184.215.14/hook",
            "https://8.8.8.8:8443/hook",
            "https://172.32.0.1/hook",
            "https://100.128.0.1/hook",
            "https://[2606:4700::1111]/hook",
            "https://[::ffff:8.8.8.8]/hook",
        ] {
            assert!(check_target(url, false, &[]).is_ok(), "{url}");
        }
    }

    #[test]
    fn scheme_credentials_and_shape_are_checked() {
        assert_eq!(
            check_target("http://hooks.example.com/", false, &[]),
            Err(TargetError::NotHttps)
        );
        assert!(check_target("http://hooks.example.com/", true, &[]).is_ok());
        assert_eq!(
            check_target("ftp://hooks.example.com/", true, &[]),
            Err(TargetError::NotHttps)
        );
        assert_eq!(check_target("/hook", false, &[]), Err(TargetError::NotAUrl));
        assert_eq!(
            check_target("hooks.example.com/hook", false, &[]),
            Err(TargetError::NotAUrl)
        );
        assert_eq!(check_target("", false, &[]), Err(TargetError::NotAUrl));
        assert_eq!(
            check_target("https://user:pw@hooks.example.com/", false, &[]),
            Err(TargetError::Credentials)
        );
    }

    #[test]
    fn an_allowed_network_opens_only_itself() {
        let allow = ["127.0.0.0/8".parse::<Cidr>().expect("cidr")];
        assert!(check_target("https://127.0.0.1:9443/hook", false, &allow).is_ok());
        assert!(check_target("https://[::ffff:127.0.0.2]/hook", false, &allow).is_ok());
        assert!(check_target("https://localhost/hook", false, &allow).is_ok());
        assert_eq!(
            check_target("https://[::1]/hook", false, &allow),
            Err(TargetError::AddressNotAllowed)
        );
        assert_eq!(
            check_target("https://10.0.0.1/hook", false, &allow),
            Err(TargetError::AddressNotAllowed)
        );
        let one: Cidr = "::1".parse().expect("one address");
        assert!(one.contains("::1".parse().expect("ip")));
        assert!(!one.contains("::2".parse().expect("ip")));
    }

    #[test]
    fn networks_parse_and_match_by_prefix() {
        let net: Cidr = "192.168.0.0/23".parse().expect("cidr");
        assert!(net.contains("192.168.1.255".parse().expect("ip")));
        assert!(!net.contains("192.168.2.0".parse().expect("ip")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains("10.1.2.3".parse().expect("ip")));
        assert!(!all.contains("::1".parse().expect("ip")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host/8",
            "10.0.0.0/-1",
            "10.0.0.0/",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Whatever the spelling, a literal is judged by the address it parses to: decimal,
        /// hexadecimal, dotted, IPv4-mapped and NAT64 forms of one address agree.
        #[test]
        fn every_spelling_of_an_address_is_judged_alike(n: u32) {
            let v4 = Ipv4Addr::from(n);
            let [a, b, c, d] = v4.octets();
            let want = is_global(IpAddr::V4(v4));
            let hi = u16::from_be_bytes([a, b]);
            let lo = u16::from_be_bytes([c, d]);
            for url in [
                format!("https://{v4}/"),
                format!("https://{n}/"),
                format!("https://0x{n:x}/"),
                format!("https://0x{a:x}.{b}.{c}.{d}/"),
                format!("https://[::ffff:{v4}]/"),
                format!("https://[::ffff:{hi:x}:{lo:x}]/"),
                format!("https://[64:ff9b::{hi:x}:{lo:x}]/"),
            ] {
                let got = check_target(&url, false, &[]);
                proptest::prop_assert_eq!(got.is_ok(), want, "{}", url);
            }
        }
    }
}
