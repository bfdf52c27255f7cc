//! Compiling the client-identity and network parts of the config: network
//! rules (checked when a connection is accepted), trusted proxies, the
//! country database and sites' country policies.

use crate::config::{Config, Diagnostics, GeoPolicyConfig, KeyPath};
use crate::geo::{CountryCode, GeoDb, GeoPolicy};
use crate::netrules::{NetworkRules, TrustedProxies};
use std::path::Path;
use std::sync::Arc;

/// Who the client is and where it may come from.
pub struct NetworkPlan {
    pub rules: Arc<NetworkRules>,
    pub trusted_proxies: TrustedProxies,
    pub geo: Option<Arc<GeoDb>>,
}

pub fn compile_network(
    cfg: &Config,
    base_dir: &Path,
    resolve: &dyn Fn(&Path) -> std::path::PathBuf,
    d: &mut Diagnostics,
) -> Option<NetworkPlan> {
    let rules = match cfg.network_rules.compile(Some(base_dir)) {
        Ok(r) => Some(r),
        Err(errors) => {
            errors.iter().for_each(|e| d.error_text(e));
            None
        }
    };
    let trusted =
        match TrustedProxies::new(&cfg.client_ip.trusted_proxies, "client_ip.trusted_proxies") {
            Ok(t) => Some(t),
            Err(errors) => {
                errors.iter().for_each(|e| d.error_text(e));
                None
            }
        };
    let geo = cfg.geoip.as_ref().and_then(|g| {
        let path = KeyPath::root().key("geoip");
        let Some(unknown) = CountryCode::new(&g.unknown) else {
            d.error(
                &path.key("unknown"),
                format!("{:?} is not a two-letter country code", g.unknown),
            );
            return None;
        };
        let opened =
            GeoDb::open(&resolve(&g.database), g.field).and_then(|db| db.verify().map(|()| db));
        match opened {
            Ok(db) => Some(Arc::new(db.with_unknown(unknown))),
            Err(msg) => {
                d.error(&path.key("database"), msg);
                None
            }
        }
    });
    let has_geo_errors = cfg.geoip.is_some() && geo.is_none();
    (!has_geo_errors).then_some(())?;
    Some(NetworkPlan {
        rules: Arc::new(rules?),
        trusted_proxies: trusted?,
        geo,
    })
}

/// A site's country policy; needs a `[geoip]` database.
pub fn compile_geo_policy(
    g: &GeoPolicyConfig,
    path: &KeyPath,
    has_db: bool,
    d: &mut Diagnostics,
) -> Option<GeoPolicy> {
    if !has_db {
        d.error(path, "a country policy needs a [geoip] database");
    }
    let codes = |list: &[String], key: &str, d: &mut Diagnostics| -> Vec<CountryCode> {
        list.iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let code = CountryCode::new(c);
                if code.is_none() {
                    d.error(
                        &path.key(key).index(i),
                        format!("{c:?} is not a two-letter country code"),
                    );
                }
                code
            })
            .collect()
    };
    match (g.allow.is_empty(), g.deny.is_empty()) {
        (false, true) => Some(GeoPolicy::Allow(codes(&g.allow, "allow", d))),
        (true, false) => Some(GeoPolicy::Deny(codes(&g.deny, "deny", d))),
        _ => {
            d.error(path, "set exactly one of allow or deny");
            None
        }
    }
}
