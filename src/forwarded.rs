//! Who the client is, when a trusted proxy stands in front: `Forwarded` (RFC 7239) or `X-Forwarded-For`, believed
//! only from the peers in `--trusted-proxies`, so that no client can name itself.

use std::net::IpAddr;

use actix_web::http::header::{self, HeaderMap};
use ipnet::IpNet;

/// The client: the peer, unless the peer is a trusted proxy; then, walking the proxies' `Forwarded` (or, without
/// it, `X-Forwarded-For`) entries from the nearest hop back, the first address that is not a trusted proxy
/// itself (nginx's `real_ip_recursive`). An entry that is not an address (`unknown`, an obfuscated name) ends
/// the walk at the hop that added it.
pub fn client_addr(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&ip.to_canonical()));
    let mut client = peer?;
    if !is_trusted(&client) {
        return Some(client);
    }
    let forwarded: Vec<&str> = headers.get_all(header::FORWARDED).filter_map(|v| v.to_str().ok()).collect();
    let hops: Vec<Option<IpAddr>> = if forwarded.is_empty() {
        let lines = headers.get_all("x-forwarded-for").filter_map(|v| v.to_str().ok());
        lines.flat_map(|line| line.split(',')).map(|hop| parse_hop(hop.trim())).collect()
    } else {
        let elements = forwarded.into_iter().flat_map(|line| line.split(','));
        let fors = elements.filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.trim().eq_ignore_ascii_case("for").then(|| value.trim())
            })
        });
        fors.map(parse_hop).collect()
    };
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) => client = ip,
            None => break,
        }
        if !is_trusted(&client) {
            break;
        }
    }
    Some(client)
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim_matches('"');
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    hop.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn client(peer: &str, headers: &[(&'static str, &str)], trusted: &[&str]) -> String {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(HeaderName::from_static(name), HeaderValue::from_str(value).unwrap());
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|net| net.parse().unwrap()).collect();
        client_addr(Some(peer.parse().unwrap()), &map, &trusted).unwrap().to_string()
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let xff = [("x-forwarded-for", "203.0.113.9")];
        assert_eq!(client("198.51.100.7", &xff, &["127.0.0.1/32"]), "198.51.100.7");
        assert_eq!(client("127.0.0.1", &xff, &["127.0.0.1/32"]), "203.0.113.9");
        assert_eq!(client("127.0.0.1", &[], &["127.0.0.1/32"]), "127.0.0.1");
    }

    #[test]
    fn the_client_is_the_nearest_hop_that_is_not_a_trusted_proxy() {
        let trusted = ["127.0.0.1/32", "10.0.0.0/8"];
        let spoofed = [("x-forwarded-for", "1.2.3.4, 203.0.113.9"), ("x-forwarded-for", "10.1.2.3")];
        assert_eq!(client("127.0.0.1", &spoofed, &trusted), "203.0.113.9");
        let forwarded =
            [("forwarded", "for=1.2.3.4, for=\"[2001:db8::1]:4711\";proto=https"), ("x-forwarded-for", "9.9.9.9")];
        assert_eq!(client("10.0.0.1", &forwarded, &trusted), "2001:db8::1");
        assert_eq!(client("10.0.0.1", &[("forwarded", "for=192.0.2.60:8080")], &trusted), "192.0.2.60");
        assert_eq!(client("10.0.0.1", &[("forwarded", "for=unknown")], &trusted), "10.0.0.1");
        assert_eq!(client("10.0.0.1", &[("x-forwarded-for", "10.0.0.2, 10.0.0.3")], &trusted), "10.0.0.2");
    }
}
