//! Geo-match databases and network rules through the public API:
//! build both mmdb layouts from CSV, open and look them up (v4, v6, mapped,
//! unknown, corrupt), NSG-style rule order, longest-prefix matching at scale,
//! X-Forwarded-For trust and the PROXY protocol parser.

use portcullis::geo::{build_mmdb, CountryCode, GeoDb, GeoField, MmdbLayout};
use portcullis::netrules::{
    encode_v2, parse_proxy_header, Action, NetworkRules, NetworkRulesConfig, PrefixSet, ProxyError,
    ProxyHeader, TrustedProxies,
};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn project_csv() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/test-countries.csv");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn write_db(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".mmdb").tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
    f
}

fn cc(db: &GeoDb, addr: &str) -> String {
    db.lookup(ip(addr)).to_string()
}

#[test]
fn geoip2_layout_roundtrip() {
    let bytes = build_mmdb(&project_csv(), MmdbLayout::GeoIp2).unwrap();
    let file = write_db(&bytes);
    let db = GeoDb::open(file.path(), GeoField::CountryIsoCode).unwrap();
    assert_eq!(cc(&db, "127.0.0.1"), "NL");
    assert_eq!(cc(&db, "127.0.0.66"), "KP");
    assert_eq!(cc(&db, "127.0.0.2"), "DE");
    assert_eq!(
        cc(&db, "127.9.9.9"),
        "NL",
        "the /8 covers unlisted loopback"
    );
    assert_eq!(cc(&db, "192.0.2.1"), "DE");
    assert_eq!(cc(&db, "192.0.2.66"), "KP", "more specific line wins");
    assert_eq!(cc(&db, "::1"), "NL");
    assert_eq!(cc(&db, "2001:db8::1"), "FR");
    assert_eq!(cc(&db, "2001:db8:66::1"), "KP");
    // IPv4-mapped IPv6 is looked up as IPv4.
    assert_eq!(cc(&db, "::ffff:127.0.0.66"), "KP");
    assert_eq!(cc(&db, "::ffff:198.51.100.9"), "US");
    // Not in the database: the unknown code.
    assert_eq!(cc(&db, "10.1.2.3"), "ZZ");
    assert_eq!(cc(&db, "2001:db9::1"), "ZZ");
    assert_eq!(db.try_lookup(ip("10.1.2.3")).unwrap(), None);
    let db = db.with_unknown(CountryCode::new("XX").unwrap());
    assert_eq!(cc(&db, "10.1.2.3"), "XX");

    // The registered-country field reads the same records.
    let reg = GeoDb::open(file.path(), GeoField::RegisteredCountry).unwrap();
    assert_eq!(cc(&reg, "127.0.0.66"), "KP");
    // The flat field finds nothing in a GeoIP2-layout file.
    let flat = GeoDb::open(file.path(), GeoField::CountryCode).unwrap();
    assert_eq!(cc(&flat, "127.0.0.66"), "ZZ");

    let m = db.metadata();
    assert_eq!(m.database_type, "Portcullis-GeoIP2-Country");
    assert_eq!(m.ip_version, 6);
    assert!(m.node_count > 0);
    assert!(
        m.build_date.ends_with(" UTC") && m.build_date.len() == 23,
        "{}",
        m.build_date
    );
    assert!(m.to_string().contains("Portcullis-GeoIP2-Country"));

    let (network, record) = db.record_json(ip("127.0.0.66")).unwrap().unwrap();
    assert_eq!(network, "127.0.0.66/32");
    assert_eq!(record["country"]["iso_code"], "KP");
    assert_eq!(record["registered_country"]["iso_code"], "KP");
}

#[test]
fn dbip_layout_roundtrip() {
    let bytes = build_mmdb(&project_csv(), MmdbLayout::DbIp).unwrap();
    let file = write_db(&bytes);
    let db = GeoDb::open(file.path(), GeoField::CountryCode).unwrap();
    assert_eq!(cc(&db, "127.0.0.1"), "NL");
    assert_eq!(cc(&db, "127.0.0.66"), "KP");
    assert_eq!(cc(&db, "::ffff:127.0.0.66"), "KP");
    assert_eq!(cc(&db, "2001:db8::1"), "FR");
    assert_eq!(cc(&db, "203.0.113.200"), "CN");
    assert_eq!(cc(&db, "8.8.8.8"), "ZZ");
    let (_, record) = db.record_json(ip("127.0.0.66")).unwrap().unwrap();
    assert_eq!(record, serde_json::json!({"country_code": "KP"}));
    assert_eq!(db.metadata().database_type, "Portcullis-DBIP-Country");
    // The GeoIP2 field finds nothing in a flat file.
    let wrong = GeoDb::open(file.path(), GeoField::CountryIsoCode).unwrap();
    assert_eq!(cc(&wrong, "127.0.0.66"), "ZZ");
}

#[test]
fn csv_ranges_and_override_order() {
    // The /32 comes first but still wins over the later /24.
    let csv = "192.0.2.9/32,KP\n192.0.2.0/24,DE\n198.51.100.10,198.51.100.19,US\n";
    let file = write_db(&build_mmdb(csv, MmdbLayout::GeoIp2).unwrap());
    let db = GeoDb::open(file.path(), GeoField::CountryIsoCode).unwrap();
    assert_eq!(cc(&db, "192.0.2.9"), "KP");
    assert_eq!(cc(&db, "192.0.2.10"), "DE");
    assert_eq!(cc(&db, "198.51.100.9"), "ZZ");
    assert_eq!(cc(&db, "198.51.100.10"), "US");
    assert_eq!(cc(&db, "198.51.100.19"), "US");
    assert_eq!(cc(&db, "198.51.100.20"), "ZZ");
    let err = build_mmdb("10.0.0.0/8,DE\nbogus,DE\n", MmdbLayout::DbIp).unwrap_err();
    assert!(err.starts_with("line 2:"), "{err}");
}

#[test]
fn geo_cli_commands() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("c.csv");
    std::fs::write(&csv, project_csv()).unwrap();
    let out = dir.path().join("c.mmdb");
    portcullis::geo::cli::build_cmd(&csv, &out, MmdbLayout::DbIp).unwrap();
    let text = portcullis::geo::cli::lookup_cmd(&out, "127.0.0.66", GeoField::CountryCode).unwrap();
    assert!(text.contains("ip: 127.0.0.66"), "{text}");
    assert!(text.contains("country: KP"), "{text}");
    assert!(text.contains("\"country_code\": \"KP\""), "{text}");
    let text = portcullis::geo::cli::lookup_cmd(&out, "10.0.0.1", GeoField::CountryCode).unwrap();
    assert!(text.contains("ZZ (not found)"), "{text}");
    assert!(portcullis::geo::cli::lookup_cmd(&out, "not-an-ip", GeoField::CountryCode).is_err());
    let missing = dir.path().join("missing.csv");
    let err = portcullis::geo::cli::build_cmd(&missing, &out, MmdbLayout::DbIp).unwrap_err();
    assert!(format!("{err:#}").contains("missing.csv"), "{err:#}");
}

#[test]
fn corrupt_databases_are_errors_naming_the_file() {
    let good = build_mmdb(&project_csv(), MmdbLayout::GeoIp2).unwrap();
    let missing = GeoDb::open(Path::new("/nonexistent/x.mmdb"), GeoField::CountryIsoCode);
    assert!(missing.unwrap_err().contains("/nonexistent/x.mmdb"));
    let mut cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"not a database".to_vec(),
        good[..good.len() / 2].to_vec(),
        good[good.len() - 40..].to_vec(),
    ];
    // Flip bytes throughout the file: open must either fail cleanly or give a
    // database whose lookups do not panic.
    for i in (0..good.len()).step_by(7) {
        let mut b = good.clone();
        b[i] ^= 0xa5;
        cases.push(b);
    }
    for (n, bytes) in cases.into_iter().enumerate() {
        let file = write_db(&bytes);
        match GeoDb::open(file.path(), GeoField::CountryIsoCode) {
            Err(e) => assert!(
                e.contains(&file.path().display().to_string()),
                "case {n}: {e}"
            ),
            Ok(db) => {
                for a in [
                    "127.0.0.66",
                    "::1",
                    "2001:db8::1",
                    "10.0.0.1",
                    "::ffff:192.0.2.1",
                ] {
                    let _ = db.lookup(ip(a));
                    let _ = db.record_json(ip(a));
                }
            }
        }
    }
}

fn rules(json: serde_json::Value) -> NetworkRules {
    serde_json::from_value::<NetworkRulesConfig>(json)
        .unwrap()
        .compile(None)
        .unwrap()
}

#[test]
fn network_rules_priority_and_default() {
    let r = rules(serde_json::json!({
        "default_action": "deny",
        "rules": [
            {"priority": 300, "name": "allow-web", "action": "allow", "sources": ["*"], "ports": [80, 443]},
            {"priority": 100, "name": "deny-bad-host", "action": "deny", "sources": ["192.0.2.66/32"]},
            {"priority": 200, "name": "allow-doc-net", "action": "allow", "sources": ["192.0.2.0/24"]},
        ]
    }));
    // 100 beats 200 even though 200's prefix also matches.
    let d = r.evaluate(ip("192.0.2.66"), 443);
    assert_eq!(
        (d.action, d.rule_name, d.priority),
        (Action::Deny, Some("deny-bad-host"), Some(100))
    );
    let d = r.evaluate(ip("192.0.2.7"), 22);
    assert_eq!(
        (d.action, d.rule_name),
        (Action::Allow, Some("allow-doc-net"))
    );
    let d = r.evaluate(ip("198.51.100.1"), 443);
    assert_eq!((d.action, d.rule_name), (Action::Allow, Some("allow-web")));
    let d = r.evaluate(ip("198.51.100.1"), 22);
    assert_eq!((d.action, d.rule_name), (Action::Deny, None));
    assert!(!d.is_allowed());

    // Empty config: allow everything.
    let r = NetworkRulesConfig::default().compile(None).unwrap();
    assert!(r.evaluate(ip("::1"), 1).is_allowed());
}

#[test]
fn network_rules_from_toml_with_file_sets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("drop.txt"),
        "# drop list\n203.0.113.0/24\n2001:db8:bad::/48 # v6\n",
    )
    .unwrap();
    let text = r#"
        default_action = "allow"
        [address_sets]
        office = ["198.51.100.0/24"]
        drop = ["file:drop.txt", "192.0.2.66"]
        [[rules]]
        priority = 100
        name = "drop"
        action = "deny"
        sources = ["$drop"]
        [[rules]]
        priority = 200
        name = "admin-office"
        action = "allow"
        sources = ["$office"]
        ports = [8443]
        protocol = "tcp"
        [[rules]]
        priority = 210
        name = "admin-others"
        action = "deny"
        sources = ["*"]
        ports = ["8443-8444"]
    "#;
    let cfg: NetworkRulesConfig = toml::from_str(text).unwrap();
    let r = cfg.compile(Some(dir.path())).unwrap();
    assert_eq!(r.evaluate(ip("203.0.113.5"), 443).rule_name, Some("drop"));
    assert_eq!(
        r.evaluate(ip("2001:db8:bad::1"), 443).rule_name,
        Some("drop")
    );
    assert_eq!(r.evaluate(ip("192.0.2.66"), 443).rule_name, Some("drop"));
    assert_eq!(r.evaluate(ip("198.51.100.1"), 8443).action, Action::Allow);
    assert_eq!(
        r.evaluate(ip("192.0.2.1"), 8444).rule_name,
        Some("admin-others")
    );
    assert_eq!(r.evaluate(ip("192.0.2.1"), 443).rule_name, None);

    let bad: Result<NetworkRulesConfig, _> =
        toml::from_str("default_action = \"allow\"\nbogus = 1\n");
    assert!(bad.is_err(), "unknown keys are rejected");
}

#[test]
fn network_rules_compile_errors() {
    let cfg: NetworkRulesConfig = serde_json::from_value(serde_json::json!({
        "rules": [
            {"priority": 100, "name": "a", "action": "deny", "sources": ["10.0.0.0/8"]},
            {"priority": 100, "name": "b", "action": "deny", "sources": ["10.0.0.0/8"]},
            {"priority": 300, "name": "c", "action": "deny", "sources": ["10.0.0.0/33", "$missing"]},
        ]
    }))
    .unwrap();
    let errs = cfg.compile(None).unwrap_err();
    assert!(
        errs.contains(
            &"network_rules.rules[2].sources[0]: invalid CIDR \"10.0.0.0/33\"".to_string()
        ),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("network_rules.rules[1].priority: duplicate priority 100")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("network_rules.rules[2].sources[1]: unknown address set")),
        "{errs:?}"
    );
}

#[test]
fn longest_prefix_with_overlaps() {
    let set: PrefixSet<&str> = [
        ("0.0.0.0/0", "default"),
        ("10.0.0.0/8", "ten"),
        ("10.20.0.0/16", "ten-twenty"),
        ("10.20.30.0/24", "ten-twenty-thirty"),
        ("10.20.30.40/32", "host"),
        ("2001:db8::/32", "doc6"),
        ("2001:db8:1::/48", "doc6-1"),
    ]
    .into_iter()
    .map(|(n, v)| (n.parse().unwrap(), v))
    .collect();
    let get = |a: &str| set.lookup(ip(a)).copied();
    assert_eq!(get("10.20.30.40"), Some("host"));
    assert_eq!(get("10.20.30.41"), Some("ten-twenty-thirty"));
    assert_eq!(get("10.20.31.1"), Some("ten-twenty"));
    assert_eq!(get("10.21.0.0"), Some("ten"));
    assert_eq!(get("11.0.0.0"), Some("default"));
    assert_eq!(get("::ffff:10.20.30.40"), Some("host"));
    assert_eq!(get("2001:db8:1::5"), Some("doc6-1"));
    assert_eq!(get("2001:db8:2::5"), Some("doc6"));
    assert_eq!(get("2001:db9::"), None);
    let (net, v) = set.lookup_prefix(ip("10.20.30.99")).unwrap();
    assert_eq!(
        (net.to_string().as_str(), *v),
        ("10.20.30.0/24", "ten-twenty-thirty")
    );
}

#[test]
fn prefix_set_with_100k_prefixes() {
    // 100k disjoint /24s (every third /24 from 10.0.0.0 up to 14.147.x.x), 1000
    // /16 parents over the first of them, and 20k IPv6 /48s.
    let mut items = Vec::new();
    for i in 0..100_000u32 {
        let base = 0x0a00_0000u32 + i * 256 * 3; // every third /24
        items.push((IpAddr::from(base.to_be_bytes()), 24u8, i));
    }
    for j in 0..1_000u32 {
        items.push((
            IpAddr::from((0x0a00_0000u32 + j * 65_536).to_be_bytes()),
            16,
            1_000_000 + j,
        ));
    }
    for k in 0..20_000u128 {
        let a: u128 = (0x2001_0db8u128 << 96) | (k << 80);
        items.push((IpAddr::from(a.to_be_bytes()), 48, 2_000_000 + k as u32));
    }
    let set: PrefixSet<u32> = items
        .iter()
        .map(|(a, l, v)| (ipnet::IpNet::new(*a, *l).unwrap(), *v))
        .collect();
    assert_eq!(set.len(), 121_000);
    for i in (0..100_000u32).step_by(997) {
        let base = 0x0a00_0000u32 + i * 256 * 3;
        assert_eq!(
            set.lookup(IpAddr::from((base + 77).to_be_bytes())),
            Some(&i)
        );
        // The /24 after it is not listed: its /16 parent (if any) answers.
        let gap = base + 256;
        let parent = (gap - 0x0a00_0000) / 65_536;
        let expect = if parent < 1_000 {
            Some(1_000_000 + parent)
        } else {
            None
        };
        assert_eq!(
            set.lookup(IpAddr::from(gap.to_be_bytes())).copied(),
            expect,
            "gap {i}"
        );
    }
    assert_eq!(set.lookup(ip("2001:db8:0:1::")).copied(), Some(2_000_000));
    assert_eq!(
        set.lookup(ip("2001:db8:4e1f::1")).copied(),
        Some(2_000_000 + 0x4e1f)
    );
    assert_eq!(set.lookup(ip("2001:db8:4e20::1")), None);

    // The same set as a rule source.
    let cidrs: Vec<String> = items.iter().map(|(a, l, _)| format!("{a}/{l}")).collect();
    let cfg: NetworkRulesConfig = serde_json::from_value(serde_json::json!({
        "address_sets": {"big": cidrs},
        "rules": [{"priority": 1, "name": "big", "action": "deny", "sources": ["$big"]}]
    }))
    .unwrap();
    let r = cfg.compile(None).unwrap();
    assert_eq!(r.evaluate(ip("10.0.3.1"), 443).rule_name, Some("big"));
    assert_eq!(r.evaluate(ip("20.0.0.1"), 443).rule_name, None);
}

#[test]
fn xff_only_from_trusted_peers() {
    let t = TrustedProxies::new(&["10.0.0.0/8", "::1"], "trusted_proxies").unwrap();
    let xff = Some("203.0.113.9, 198.51.100.7, 10.0.0.2");
    // Untrusted peer: the header is ignored.
    assert_eq!(t.client_ip(ip("192.0.2.1"), xff), ip("192.0.2.1"));
    // Trusted peer: right-most untrusted address.
    assert_eq!(t.client_ip(ip("10.0.0.1"), xff), ip("198.51.100.7"));
    assert_eq!(t.client_ip(ip("::1"), xff), ip("198.51.100.7"));
    // Garbage stops the walk at the last good (trusted) hop.
    assert_eq!(
        t.client_ip(ip("10.0.0.1"), Some("198.51.100.7, junk, 10.0.0.2")),
        ip("10.0.0.2")
    );
    assert_eq!(t.client_ip(ip("10.0.0.1"), Some("")), ip("10.0.0.1"));
    assert_eq!(t.client_ip(ip("10.0.0.1"), None), ip("10.0.0.1"));
    assert!(TrustedProxies::new(&["10.0.0.0/33"], "trusted_proxies").is_err());
}

#[test]
fn proxy_protocol_v1() {
    let buf = b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 443\r\n\x16\x03\x01";
    let (h, n) = parse_proxy_header(buf).unwrap().unwrap();
    assert_eq!(n, buf.len() - 3);
    assert_eq!(
        h.source(),
        Some("[2001:db8::1]:4711".parse::<SocketAddr>().unwrap())
    );
    let (h, n) = parse_proxy_header(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
    assert_eq!((h, n), (ProxyHeader::Unknown { version: 1 }, 15));
    assert!(matches!(
        parse_proxy_header(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
        Ok(Some((ProxyHeader::Unknown { version: 1 }, 35)))
    ));
    assert_eq!(parse_proxy_header(b"PROXY TCP4 1.2.3.4"), Ok(None));
    assert_eq!(parse_proxy_header(b"PRO"), Ok(None));
    assert_eq!(
        parse_proxy_header(b"\x16\x03\x01\x02\x00"),
        Err(ProxyError::NotProxyProtocol)
    );
    assert!(parse_proxy_header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n").is_err());
    assert!(parse_proxy_header(b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n").is_err());
    assert!(parse_proxy_header(b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n").is_err());
    assert!(parse_proxy_header(&[b'P', b'R', b'O', b'X', b'Y', b' ', 0xff, b'\r', b'\n']).is_err());
    assert!(parse_proxy_header(&[b"PROXY ".as_slice(), &[b'1'; 120]].concat()).is_err());
}

#[test]
fn proxy_protocol_v2() {
    let src: SocketAddr = "192.0.2.1:50000".parse().unwrap();
    let dst: SocketAddr = "198.51.100.2:443".parse().unwrap();
    let mut buf = encode_v2(src, dst);
    let hdr_len = buf.len();
    assert_eq!(hdr_len, 28);
    buf.extend_from_slice(b"\x16\x03\x01");
    let (h, n) = parse_proxy_header(&buf).unwrap().unwrap();
    assert_eq!(n, hdr_len);
    assert_eq!(
        h,
        ProxyHeader::Proxy {
            version: 2,
            source: src,
            destination: dst
        }
    );
    for cut in 0..hdr_len {
        assert_eq!(parse_proxy_header(&buf[..cut]), Ok(None), "cut {cut}");
    }

    // TLVs after the addresses are skipped.
    let mut tlv = encode_v2(src, dst);
    tlv[14..16].copy_from_slice(&(12u16 + 5).to_be_bytes());
    tlv.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']);
    assert_eq!(parse_proxy_header(&tlv).unwrap().unwrap().1, 16 + 17);

    // LOCAL with no addresses.
    let mut local = portcullis::netrules::V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    assert_eq!(
        parse_proxy_header(&local),
        Ok(Some((ProxyHeader::Local, 16)))
    );
    // AF_UNSPEC PROXY: unknown, use the peer.
    let mut unspec = portcullis::netrules::V2_SIGNATURE.to_vec();
    unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
    assert_eq!(
        parse_proxy_header(&unspec),
        Ok(Some((ProxyHeader::Unknown { version: 2 }, 16)))
    );

    // Garbage: wrong version, wrong command, unknown family, too-short address block.
    for (i, byte, val) in [(12, 0x31u8, 0), (12, 0x2f, 0), (13, 0x41, 0), (15, 0x11, 4)] {
        let mut b = encode_v2(src, dst);
        b[i] = byte;
        if val != 0 {
            b[14] = 0;
            b[15] = val;
            b[13] = 0x11;
        }
        assert!(parse_proxy_header(&b).is_err(), "case {i}/{byte:#x}");
    }
    // IPv4 family declared with a 4-byte body.
    let mut short = encode_v2(src, dst);
    short[14..16].copy_from_slice(&4u16.to_be_bytes());
    assert!(matches!(
        parse_proxy_header(&short),
        Err(ProxyError::InvalidV2(_))
    ));
    // Random noise never panics.
    let mut x: u32 = 12345;
    for _ in 0..2000 {
        let mut b = portcullis::netrules::V2_SIGNATURE.to_vec();
        for _ in 0..(x % 64) {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            b.push((x >> 16) as u8);
        }
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let _ = parse_proxy_header(&b);
    }
}
