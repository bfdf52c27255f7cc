//! Country lookups for geo-match blocking, from MaxMind-format (`.mmdb`) databases.
//!
//! Two record layouts are understood:
//! - GeoIP2 / GeoLite2 Country and City: `country.iso_code`, with
//!   `registered_country.iso_code` as fallback ([`GeoField::CountryIsoCode`]),
//!   or the registered country only ([`GeoField::RegisteredCountry`]);
//! - the flat DB-IP / ip-location-db layout: `country_code` ([`GeoField::CountryCode`]).
//!
//! [`GeoDb::lookup`] decodes only the one string it needs, straight from the
//! database buffer (no allocation), and never fails: addresses without data, or
//! a damaged record, yield the configured unknown code (default `ZZ`).
//!
//! [`build_mmdb`] writes a small database from the project's own CSV
//! (`geoip/test-countries.csv`) for tests and demos; [`cli`] holds the
//! `portcullis geoip build|lookup` commands.

mod build;
pub mod cli;
mod policy;

pub use build::{build_mmdb, parse_csv, CsvEntry, MmdbLayout};
pub use policy::GeoPolicy;

use maxminddb::{path, MaxMindDbError, Reader};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// An ISO 3166-1 alpha-2 country code (two upper-case ASCII letters), or a
/// pseudo-code such as `ZZ` (unknown), `EU`, `AP`, `XK`. `Copy`, 2 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// `ZZ`: the ISO 3166 user-assigned code conventionally used for "unknown".
    pub const UNKNOWN: CountryCode = CountryCode(*b"ZZ");

    /// Parses two ASCII letters (case-insensitive).
    pub fn new(s: &str) -> Option<CountryCode> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Some(CountryCode([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
            ])),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("ZZ")
    }

    pub fn as_bytes(&self) -> [u8; 2] {
        self.0
    }

    pub fn is_unknown(&self) -> bool {
        *self == CountryCode::UNKNOWN
    }
}

impl Default for CountryCode {
    fn default() -> Self {
        CountryCode::UNKNOWN
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

impl std::str::FromStr for CountryCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CountryCode::new(s.trim()).ok_or_else(|| {
            format!("invalid country code {s:?} (expected two letters, e.g. \"DE\")")
        })
    }
}

impl Serialize for CountryCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which record field holds the country.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeoField {
    /// GeoIP2/GeoLite2: `country.iso_code`, falling back to
    /// `registered_country.iso_code` (e.g. for anycast or satellite ranges).
    #[default]
    CountryIsoCode,
    /// GeoIP2/GeoLite2: `registered_country.iso_code` only (where the block is registered).
    RegisteredCountry,
    /// DB-IP / ip-location-db flat layout: `country_code`.
    CountryCode,
}

impl std::str::FromStr for GeoField {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "country_iso_code" | "country" | "geoip2" => Ok(GeoField::CountryIsoCode),
            "registered_country" => Ok(GeoField::RegisteredCountry),
            "country_code" | "dbip" => Ok(GeoField::CountryCode),
            _ => Err(format!(
                "unknown geo field {s:?} (expected country_iso_code, registered_country or country_code)"
            )),
        }
    }
}

impl fmt::Display for GeoField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GeoField::CountryIsoCode => "country_iso_code",
            GeoField::RegisteredCountry => "registered_country",
            GeoField::CountryCode => "country_code",
        })
    }
}

/// Summary of a database's metadata, for `portcullis check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GeoDbInfo {
    pub path: PathBuf,
    pub database_type: String,
    pub build_epoch: u64,
    /// `YYYY-MM-DD HH:MM:SS UTC`.
    pub build_date: String,
    pub ip_version: u16,
    pub node_count: u32,
    pub record_size: u16,
    /// The English description, when present.
    pub description: Option<String>,
    pub file_size: usize,
}

impl fmt::Display for GeoDbInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} built {}, IPv{}, {} nodes ({}-bit records), {} bytes",
            self.path.display(),
            self.database_type,
            self.build_date,
            self.ip_version,
            self.node_count,
            self.record_size,
            self.file_size
        )
    }
}

/// An opened country database. `Send + Sync`; share it behind an `Arc`.
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    field: GeoField,
    unknown: CountryCode,
    path: PathBuf,
    size: usize,
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb")
            .field("path", &self.path)
            .field("field", &self.field)
            .field("unknown", &self.unknown)
            .finish_non_exhaustive()
    }
}

impl GeoDb {
    /// Reads the database at `path` into memory and checks its metadata and
    /// layout. Errors name the file. Lookups on a file damaged past these checks
    /// return the unknown code (the reader is bounds-checked; it does not
    /// panic). Run [`verify`](Self::verify) for a full structural check.
    pub fn open(path: &Path, field: GeoField) -> Result<GeoDb, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read GeoIP database {}: {e}", path.display()))?;
        GeoDb::from_bytes(bytes, field, path)
    }

    /// Like [`open`](Self::open) for bytes already in memory; `name` is used in messages.
    pub fn from_bytes(bytes: Vec<u8>, field: GeoField, name: &Path) -> Result<GeoDb, String> {
        let bad = |e: MaxMindDbError| format!("invalid GeoIP database {}: {e}", name.display());
        let size = bytes.len();
        let reader = Reader::from_source(bytes).map_err(bad)?;
        let db = GeoDb {
            reader,
            field,
            unknown: CountryCode::UNKNOWN,
            path: name.to_path_buf(),
            size,
        };
        Ok(db)
    }

    /// Walks the whole search tree and data section (tens to hundreds of ms on a
    /// country database): for `portcullis check` and after downloading a new
    /// file. Note that it is stricter than lookups, e.g. it rejects an empty
    /// metadata description, which some third-party builders write.
    pub fn verify(&self) -> Result<(), String> {
        self.reader.verify().map_err(|e| {
            format!(
                "GeoIP database {} failed verification: {e}",
                self.path.display()
            )
        })
    }

    /// Sets the code returned for addresses the database has no country for.
    pub fn with_unknown(mut self, code: CountryCode) -> GeoDb {
        self.unknown = code;
        self
    }

    pub fn field(&self) -> GeoField {
        self.field
    }

    pub fn unknown_code(&self) -> CountryCode {
        self.unknown
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The country for `ip`, or the unknown code. IPv4-mapped IPv6 addresses are
    /// looked up as IPv4. Never fails, never allocates.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> CountryCode {
        match self.try_lookup(ip) {
            Ok(Some(c)) => c,
            _ => self.unknown,
        }
    }

    /// The country for `ip`: `Ok(None)` when the database has no record or the
    /// record lacks the field (or holds something that is not a two-letter code);
    /// `Err` when the record cannot be decoded or the address family is not in
    /// the database (IPv6 in an IPv4-only database).
    pub fn try_lookup(&self, ip: IpAddr) -> Result<Option<CountryCode>, String> {
        let ip = ip.to_canonical();
        let err = |e: MaxMindDbError| format!("{}: lookup of {ip}: {e}", self.path.display());
        let res = self.reader.lookup(ip).map_err(err)?;
        if !res.has_data() {
            return Ok(None);
        }
        let code = |p: &[maxminddb::PathElement<'_>]| -> Result<Option<CountryCode>, String> {
            Ok(res
                .decode_path::<&str>(p)
                .map_err(err)?
                .and_then(CountryCode::new))
        };
        match self.field {
            GeoField::CountryIsoCode => match code(&path!["country", "iso_code"])? {
                Some(c) => Ok(Some(c)),
                None => code(&path!["registered_country", "iso_code"]),
            },
            GeoField::RegisteredCountry => code(&path!["registered_country", "iso_code"]),
            GeoField::CountryCode => code(&path!["country_code"]),
        }
    }

    /// The whole record for `ip` as JSON (for `portcullis geoip lookup`), with the
    /// network it was found in; `None` when the database has no record.
    pub fn record_json(&self, ip: IpAddr) -> Result<Option<(String, serde_json::Value)>, String> {
        let ip = ip.to_canonical();
        let err = |e: MaxMindDbError| format!("{}: lookup of {ip}: {e}", self.path.display());
        let res = self.reader.lookup(ip).map_err(err)?;
        let network = res.network().map(|n| n.to_string()).unwrap_or_default();
        Ok(res
            .decode::<serde_json::Value>()
            .map_err(err)?
            .map(|v| (network, v)))
    }

    /// Metadata summary for `portcullis check`.
    pub fn metadata(&self) -> GeoDbInfo {
        let m = self.reader.metadata();
        GeoDbInfo {
            path: self.path.clone(),
            database_type: m.database_type.clone(),
            build_epoch: m.build_epoch,
            build_date: format_epoch(m.build_epoch),
            ip_version: m.ip_version,
            node_count: m.node_count,
            record_size: m.record_size,
            description: m.description.get("en").cloned(),
            file_size: self.size,
        }
    }
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_epoch(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), using
/// 400-year eras of 146097 days counted from 0000-03-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_code_parsing() {
        assert_eq!(CountryCode::new("de").unwrap().as_str(), "DE");
        assert!(CountryCode::new("D").is_none());
        assert!(CountryCode::new("DEU").is_none());
        assert!(CountryCode::new("1A").is_none());
        assert!(CountryCode::new("Ü").is_none());
        let c: CountryCode = serde_json::from_str("\"kp\"").unwrap();
        assert_eq!(c.to_string(), "KP");
        assert!(serde_json::from_str::<CountryCode>("\"KPX\"").is_err());
        assert_eq!(std::mem::size_of::<CountryCode>(), 2);
    }

    #[test]
    fn geo_field_serde() {
        let f: GeoField = serde_json::from_str("\"registered_country\"").unwrap();
        assert_eq!(f, GeoField::RegisteredCountry);
        assert_eq!(
            serde_json::to_string(&GeoField::CountryCode).unwrap(),
            "\"country_code\""
        );
        assert_eq!("dbip".parse::<GeoField>().unwrap(), GeoField::CountryCode);
    }

    #[test]
    fn epoch_formatting() {
        assert_eq!(format_epoch(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_epoch(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_epoch(1_709_251_199), "2024-02-29 23:59:59 UTC");
        assert_eq!(format_epoch(4_102_444_800), "2100-01-01 00:00:00 UTC");
    }
}
