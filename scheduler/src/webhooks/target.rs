//! Where webhooks may go (SSRF rules): `https` only, no credentials in the URL, and every
//! address the host resolves to public — never loopback, private (RFC 1918, unique local),
//! link-local (cloud metadata at 169.254.169.254), shared (100.64/10), multicast or
//! unspecified. `vmcloud dev` allows `http` and private addresses (`--webhooks-allow-private`)
//! so that a receiver on the same machine can be used. The addresses checked are the ones
//! connected to (no second lookup a rebinding DNS could answer differently).

use std::net::{IpAddr, SocketAddr};

/// A checked destination: the URL and the addresses to connect to.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: reqwest::Url,
    pub host: String,
    pub addrs: Vec<SocketAddr>,
}

/// Whether an address is one the public internet reaches.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

/// Checks `url` as a webhook destination; resolves it.
pub async fn check(url: &str, allow_private: bool) -> Result<Target, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL ({e})"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        other => {
            return Err(format!("webhook URLs use https (`{other}` is not allowed)"));
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("a webhook URL carries no credentials: the signature proves who sends".into());
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("`{url}` has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("`{host}` does not resolve ({e})"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("`{host}` resolves to no address"));
    }
    if !allow_private && let Some(a) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(format!(
            "`{host}` resolves to {}, which is not a public address: webhooks go to the internet only",
            a.ip()
        ));
    }
    Ok(Target {
        url: parsed,
        host,
        addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_metadata_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "203.0.114.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn outside_dev_only_public_https_is_accepted() {
        let err = check("http://example.org/hook", false).await.unwrap_err();
        assert!(err.contains("https"), "{err}");
        let err = check("https://127.0.0.1:8443/hook", false)
            .await
            .unwrap_err();
        assert!(err.contains("not a public address"), "{err}");
        let err = check("https://user:pw@example.org/", false)
            .await
            .unwrap_err();
        assert!(err.contains("credentials"), "{err}");
        assert!(check("http://127.0.0.1:9/hook", true).await.is_ok());
    }
}
