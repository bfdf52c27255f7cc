//! Builds a country `.mmdb` from the project's CSV format.
//!
//! One entry per line, `#` starts a comment, blank lines are ignored:
//!
//! ```text
//! # network,country
//! 127.0.0.66/32,KP
//! 2001:db8::/32,FR
//! 192.0.2.7,DE                       # a bare address is a /32 or /128
//! 198.51.100.0,198.51.100.127,NL     # start,end,country (the ip-location-db CSV form)
//! ```
//!
//! Overlapping entries are allowed; the most specific network wins, whatever
//! the line order (for identical networks, the later line wins).

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mmdb_writer::{Value, Writer};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

use super::{CountryCode, GeoField};

/// The record layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum MmdbLayout {
    /// GeoIP2/GeoLite2 style: `{"country": {"iso_code": ..}, "registered_country": {"iso_code": ..}}`.
    #[default]
    #[serde(rename = "geoip2")]
    GeoIp2,
    /// DB-IP / ip-location-db style: `{"country_code": ..}`.
    #[serde(rename = "dbip")]
    DbIp,
}

impl MmdbLayout {
    /// The [`GeoField`] that reads this layout.
    pub fn field(self) -> GeoField {
        match self {
            MmdbLayout::GeoIp2 => GeoField::CountryIsoCode,
            MmdbLayout::DbIp => GeoField::CountryCode,
        }
    }

    /// The `database_type` written to the metadata.
    pub fn database_type(self) -> &'static str {
        match self {
            MmdbLayout::GeoIp2 => "Portcullis-GeoIP2-Country",
            MmdbLayout::DbIp => "Portcullis-DBIP-Country",
        }
    }

    fn record(self, c: CountryCode) -> Value {
        let iso = || Value::map([("iso_code", Value::from(c.as_str()))]);
        match self {
            MmdbLayout::GeoIp2 => Value::map([("country", iso()), ("registered_country", iso())]),
            MmdbLayout::DbIp => Value::map([("country_code", Value::from(c.as_str()))]),
        }
    }
}

impl fmt::Display for MmdbLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MmdbLayout::GeoIp2 => "geoip2",
            MmdbLayout::DbIp => "dbip",
        })
    }
}

impl std::str::FromStr for MmdbLayout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "geoip2" | "geolite2" | "maxmind" => Ok(MmdbLayout::GeoIp2),
            "dbip" | "db-ip" | "ip-location-db" => Ok(MmdbLayout::DbIp),
            _ => Err(format!("unknown layout {s:?} (expected geoip2 or dbip)")),
        }
    }
}

/// One parsed CSV entry: a network (ranges are split into CIDR blocks) and its country.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvEntry {
    pub line: usize,
    pub network: IpNet,
    pub country: CountryCode,
}

/// Parses the CSV text. Errors name the 1-based line.
pub fn parse_csv(csv_text: &str) -> Result<Vec<CsvEntry>, String> {
    let mut out = Vec::new();
    let mut seen_data = false;
    for (i, raw) in csv_text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line
            .split(',')
            .map(|f| f.trim().trim_matches('"'))
            .collect();
        let first_data = !seen_data;
        seen_data = true;
        if first_data
            && fields
                .first()
                .is_some_and(|f| f.eq_ignore_ascii_case("network"))
        {
            continue; // header line
        }
        let bad = |what: String| format!("line {line_no}: {what}");
        let (nets, cc) = match fields.as_slice() {
            [net, cc] => (vec![parse_net(net).map_err(bad)?], *cc),
            [start, end, cc] => (parse_range(start, end).map_err(bad)?, *cc),
            _ => {
                return Err(bad(format!(
                    "expected \"network,country\" or \"start,end,country\", got {line:?}"
                )))
            }
        };
        let country = CountryCode::new(cc).ok_or_else(|| {
            bad(format!(
                "invalid country code {cc:?} (expected two letters)"
            ))
        })?;
        out.extend(nets.into_iter().map(|network| CsvEntry {
            line: line_no,
            network,
            country,
        }));
    }
    Ok(out)
}

/// `::ffff:a.b.c.d/(96+n)` is stored as the IPv4 network, which is where IPv4 lookups go.
fn canonical(net: IpNet) -> IpNet {
    if let IpNet::V6(n) = net {
        if let (Some(v4), true) = (n.network().to_ipv4_mapped(), n.prefix_len() >= 96) {
            if let Ok(v) = Ipv4Net::new(v4, n.prefix_len() - 96) {
                return IpNet::V4(v);
            }
        }
    }
    net
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    let net = if s.contains('/') {
        s.parse::<IpNet>()
            .map_err(|_| format!("invalid network {s:?}"))?
            .trunc()
    } else {
        IpNet::from(
            s.parse::<IpAddr>()
                .map_err(|_| format!("invalid network {s:?}"))?,
        )
    };
    Ok(canonical(net))
}

fn parse_range(start: &str, end: &str) -> Result<Vec<IpNet>, String> {
    let a: IpAddr = start
        .parse()
        .map_err(|_| format!("invalid address {start:?}"))?;
    let b: IpAddr = end
        .parse()
        .map_err(|_| format!("invalid address {end:?}"))?;
    let (a, b) = (a.to_canonical(), b.to_canonical());
    match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) if x <= y => {
            Ok(split_range(u32::from(x) as u128, u32::from(y) as u128, 32)
                .into_iter()
                .map(|(s, l)| IpNet::V4(Ipv4Net::new((s as u32).into(), l).expect("valid")))
                .collect())
        }
        (IpAddr::V6(x), IpAddr::V6(y)) if x <= y => {
            Ok(split_range(u128::from(x), u128::from(y), 128)
                .into_iter()
                .map(|(s, l)| IpNet::V6(Ipv6Net::new(s.into(), l).expect("valid")))
                .collect())
        }
        _ => Err(format!(
            "invalid range {start}-{end} (mixed families or start after end)"
        )),
    }
}

/// Splits the inclusive range `[start, end]` of a `bits`-wide space into the
/// fewest aligned CIDR blocks, as (network, prefix length).
fn split_range(mut start: u128, end: u128, bits: u8) -> Vec<(u128, u8)> {
    let mut out = Vec::new();
    loop {
        // Largest block aligned at `start`...
        let align = if start == 0 {
            bits as u32
        } else {
            start.trailing_zeros().min(bits as u32)
        };
        // ...that does not run past `end`.
        let span = end - start; // block size - 1 must be <= span
        let fit = if span == u128::MAX {
            128
        } else {
            127 - (span + 1).leading_zeros()
        };
        let size_log = align.min(fit).min(bits as u32);
        out.push((start, bits - size_log as u8));
        let size_minus_1 = if size_log == 128 {
            u128::MAX
        } else {
            (1u128 << size_log) - 1
        };
        match start.checked_add(size_minus_1) {
            Some(last) if last < end => start = last + 1,
            _ => return out,
        }
    }
}

/// Builds an IPv6 `.mmdb` (IPv4 networks live in the `::/96` subtree, so IPv4
/// and IPv4-mapped lookups both work) from the CSV text, in the given layout.
pub fn build_mmdb(csv_text: &str, layout: MmdbLayout) -> Result<Vec<u8>, String> {
    let mut entries = parse_csv(csv_text)?;
    // Broader networks first so more specific ones override them; the sort is
    // stable, so among identical networks the later line wins.
    entries.sort_by_key(|e| match e.network {
        IpNet::V4(n) => (0u8, n.prefix_len()),
        IpNet::V6(n) => (1u8, n.prefix_len()),
    });
    let mut writer = Writer::builder(layout.database_type())
        .description(&[(
            "en",
            "Country database built by `portcullis geoip build` from CSV",
        )])
        .build();
    for e in &entries {
        writer
            .insert_value(e.network, layout.record(e.country))
            .map_err(|err| format!("line {}: {}: {err}", e.line, e.network))?;
    }
    writer
        .to_bytes()
        .map_err(|e| format!("cannot serialise the database: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_split_into_cidrs() {
        let v = parse_range("192.0.2.1", "192.0.2.6").unwrap();
        let s: Vec<String> = v.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            s,
            [
                "192.0.2.1/32",
                "192.0.2.2/31",
                "192.0.2.4/31",
                "192.0.2.6/32"
            ]
        );
        let all = parse_range("0.0.0.0", "255.255.255.255").unwrap();
        assert_eq!(all[0].to_string(), "0.0.0.0/0");
        let all6 = parse_range("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").unwrap();
        assert_eq!(all6[0].to_string(), "::/0");
        assert_eq!(
            parse_range("10.0.0.0", "10.0.0.255").unwrap()[0].to_string(),
            "10.0.0.0/24"
        );
        assert!(parse_range("10.0.0.2", "10.0.0.1").is_err());
        assert!(parse_range("10.0.0.2", "::1").is_err());
    }

    #[test]
    fn csv_errors_name_lines() {
        assert_eq!(
            parse_csv("# c\n\n10.0.0.0/8,DE\n10.0.0.0/33,DE\n").unwrap_err(),
            "line 4: invalid network \"10.0.0.0/33\""
        );
        assert!(parse_csv("10.0.0.0/8,DEU")
            .unwrap_err()
            .starts_with("line 1: invalid country"));
        assert!(parse_csv("10.0.0.0/8")
            .unwrap_err()
            .starts_with("line 1: expected"));
        let ok = parse_csv("network,country\n::ffff:10.0.0.0/104,de\n").unwrap();
        assert_eq!(ok[0].network.to_string(), "10.0.0.0/8");
        assert_eq!(ok[0].country.as_str(), "DE");
    }
}
