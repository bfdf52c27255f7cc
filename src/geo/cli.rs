//! `portcullis geoip build` and `portcullis geoip lookup`.

use super::{build_mmdb, GeoDb, GeoField, MmdbLayout};
use anyhow::{anyhow, Context};
use std::net::IpAddr;
use std::path::Path;

/// `portcullis geoip build CSV -o OUT.mmdb [--layout geoip2|dbip]`: builds the
/// database, checks that it opens and answers every CSV line, then writes it
/// (via a temporary file renamed into place, so a running proxy never sees a
/// half-written file).
pub fn build_cmd(csv: &Path, out: &Path, layout: MmdbLayout) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(csv)
        .with_context(|| format!("cannot read CSV {}", csv.display()))?;
    let bytes = build_mmdb(&text, layout).map_err(|e| anyhow!("{}: {e}", csv.display()))?;

    // Self-check: every entry's first address must have a record.
    let db = GeoDb::from_bytes(bytes.clone(), layout.field(), out).map_err(|e| anyhow!(e))?;
    for e in super::parse_csv(&text).map_err(|e| anyhow!("{}: {e}", csv.display()))? {
        let got = db.try_lookup(e.network.network()).map_err(|e| anyhow!(e))?;
        if got.is_none() {
            anyhow::bail!(
                "{}: line {}: {} is missing from the built database",
                csv.display(),
                e.line,
                e.network
            );
        }
    }

    let tmp = out.with_extension("mmdb.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))?;
    Ok(())
}

/// `portcullis geoip lookup -d DB IP [--field ..]`: returns the text to print:
/// the address, its country (by `field`) and the raw record as JSON.
pub fn lookup_cmd(db: &Path, ip: &str, field: GeoField) -> anyhow::Result<String> {
    let addr: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| anyhow!("invalid IP address {ip:?}"))?;
    let geo = GeoDb::open(db, field).map_err(|e| anyhow!(e))?;
    let country = match geo.try_lookup(addr).map_err(|e| anyhow!(e))? {
        Some(c) => c.to_string(),
        None => format!("{} (not found)", geo.unknown_code()),
    };
    let record = match geo.record_json(addr).map_err(|e| anyhow!(e))? {
        Some((network, v)) => format!(
            "network: {network}\nrecord: {}",
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
        ),
        None => "record: null".to_string(),
    };
    Ok(format!(
        "ip: {addr}\ncountry: {country} (field {field})\n{record}\n"
    ))
}
