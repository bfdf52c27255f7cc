//! Client identity: the real client address (the TCP peer, or from
//! X-Forwarded-For when the peer is a trusted proxy) and its country.

use crate::geo::CountryCode;
use crate::plan::NetworkPlan;
use pingora::http::RequestHeader;
use std::net::IpAddr;

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct ClientIdentity {
    pub ip: Option<IpAddr>,
    /// `None` when no country database is configured.
    pub country: Option<CountryCode>,
}

/// Works out the client address and country for a request from `peer`.
pub fn identify(net: &NetworkPlan, peer: Option<IpAddr>, req: &RequestHeader) -> ClientIdentity {
    let ip = peer.map(|peer| {
        net.trusted_proxies
            .client_ip_from(peer, || joined_xff(req).map(std::borrow::Cow::Owned))
    });
    let country = net.geo.as_ref().map(|db| match ip {
        Some(ip) => db.lookup(ip),
        None => db.unknown_code(),
    });
    ClientIdentity { ip, country }
}

/// All X-Forwarded-For headers as one comma-separated list (only read for trusted peers).
fn joined_xff(req: &RequestHeader) -> Option<String> {
    let values: Vec<&str> = req
        .headers
        .get_all(&super::forwarding::X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}
