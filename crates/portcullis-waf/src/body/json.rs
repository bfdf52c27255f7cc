//! JSON bodies: a streaming flattener that names every leaf by its path.

use super::MAX_JSON_DEPTH;
use std::ops::Range;

/// Most leaves recorded from one JSON document. Real telemetry and API bodies hold a few
/// thousand (4,009 in a 64 KB beacon); past this the rest of the document cannot be inspected,
/// which the parser reports (a body error) rather than passing it unseen.
pub const MAX_JSON_LEAVES: usize = 16384;

/// The leaves of a JSON body, named by their paths (`user.address[0].street`).
///
/// A JSON API body has hundreds of leaves. The paths, and the values that
/// need a copy (strings with escapes, numbers), are written one after the
/// other into one text that the leaves index, and values without escapes
/// borrow the body: the whole document costs a few allocations instead of two
/// per leaf, and the engine's variables borrow from here in turn.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct JsonArgs<'a> {
    text: String,
    leaves: Vec<JsonLeaf<'a>>,
    /// Values past [`MAX_JSON_LEAVES`] or [`MAX_JSON_DEPTH`] were read but not recorded.
    skipped: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct JsonLeaf<'a> {
    /// The path, a range of `JsonArgs::text`.
    name: Range<usize>,
    value: LeafValue<'a>,
}

#[derive(Debug, Clone, PartialEq)]
enum LeafValue<'a> {
    /// Borrowed from the body, or static text (`true`, `false`, empty).
    Borrowed(&'a str),
    /// A range of `JsonArgs::text`.
    Written(Range<usize>),
}

impl<'a> JsonArgs<'a> {
    /// The leaves as (path, value), in document order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.leaves.iter().map(|leaf| {
            let value = match &leaf.value {
                LeafValue::Borrowed(v) => *v,
                LeafValue::Written(r) => &self.text[r.clone()],
            };
            (&self.text[leaf.name.clone()], value)
        })
    }

    /// How many leaves there are.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Whether values were left out for being past the leaf or depth limit.
    pub fn skipped(&self) -> bool {
        self.skipped
    }

    /// Records a leaf named `path` whose value borrows the body (or is static).
    fn push_borrowed(&mut self, path: &str, value: &'a str) {
        let name = self.write(path);
        self.leaves.push(JsonLeaf {
            name,
            value: LeafValue::Borrowed(value),
        });
    }

    /// Records a leaf named `path` whose value has to be written out.
    fn push_written(&mut self, path: &str, value: &str) {
        let name = self.write(path);
        let value = self.write(value);
        self.leaves.push(JsonLeaf {
            name,
            value: LeafValue::Written(value),
        });
    }

    fn write(&mut self, s: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(s);
        start..self.text.len()
    }
}

/// Parse JSON and flatten it into path-style argument names: `user.address[0].street`.
///
/// Streams through the document (no `Value` tree), in document order, so every occurrence of a
/// duplicated key is inspected (a backend may keep the first while a tree keeps the last), and the
/// values before a syntax error (such as a truncated body) are still returned alongside the error.
pub fn parse_json_into<'a>(body: &'a [u8], out: &mut JsonArgs<'a>) -> Result<(), String> {
    // Paths and written values usually take less room than the document itself.
    out.text.reserve(body.len());
    // A body checked as UTF-8 once is read as text: serde_json then does not validate every
    // string on its own again, which is most of the cost of short strings.
    match std::str::from_utf8(body) {
        Ok(text) => flatten_json(serde_json::Deserializer::from_str(text), out),
        Err(_) => flatten_json(serde_json::Deserializer::from_slice(body), out),
    }
}

/// [`parse_json_into`] over text that does not live as long as the body (a rewritten or decoded
/// copy): every leaf is written into `out`.
pub(super) fn parse_json_copy(text: &str, out: &mut JsonArgs<'_>) -> Result<(), String> {
    let mut leaves = JsonArgs::default();
    let parsed = parse_json_into(text.as_bytes(), &mut leaves);
    for (path, value) in leaves.iter() {
        out.push_written(path, value);
    }
    out.skipped |= leaves.skipped;
    parsed
}

fn flatten_json<'a, R: serde_json::de::Read<'a>>(
    mut de: serde_json::Deserializer<R>,
    out: &mut JsonArgs<'a>,
) -> Result<(), String> {
    use serde::de::DeserializeSeed;
    let mut path = String::new();
    JsonFlattener {
        path: &mut path,
        out,
        depth: 0,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

/// Serde visitor that records each JSON leaf under its path.
struct JsonFlattener<'p, 'de> {
    path: &'p mut String,
    out: &'p mut JsonArgs<'de>,
    depth: usize,
}

impl<'de> JsonFlattener<'_, 'de> {
    /// Past the leaf or depth limit values are read but not recorded (and that is remembered).
    fn full(&mut self) -> bool {
        let full = self.out.len() >= MAX_JSON_LEAVES || self.depth > MAX_JSON_DEPTH;
        self.out.skipped |= full;
        full
    }

    fn leaf_borrowed(mut self, value: &'de str) {
        if !self.full() {
            self.out.push_borrowed(self.path, value);
        }
    }

    fn leaf_written(mut self, value: &str) {
        if !self.full() {
            self.out.push_written(self.path, value);
        }
    }

    fn child(&mut self) -> JsonFlattener<'_, 'de> {
        JsonFlattener {
            path: self.path,
            out: self.out,
            depth: self.depth + 1,
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for JsonFlattener<'_, 'de> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonFlattener<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.leaf_borrowed(if v { "true" } else { "false" });
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.leaf_written(itoa::Buffer::new().format(v));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.leaf_written(itoa::Buffer::new().format(v));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // Written as serde_json writes numbers, so values read the same as before.
        let text = serde_json::Number::from_f64(v).map_or_else(String::new, |n| n.to_string());
        self.leaf_written(&text);
        Ok(())
    }
    /// A string without escapes, borrowed from the body.
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.leaf_borrowed(v);
        Ok(())
    }
    /// A string with escapes, unescaped by serde_json into a scratch buffer.
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.leaf_written(v);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.leaf_borrowed("");
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut empty = true;
        loop {
            let len = self.path.len();
            // The key goes straight onto the path, without a String of its own.
            let Some(()) = map.next_key_seed(KeyOntoPath(self.path))? else {
                break;
            };
            empty = false;
            if self.full() {
                self.path.truncate(len);
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            map.next_value_seed(self.child())?;
            self.path.truncate(len);
        }
        if empty && !self.path.is_empty() {
            self.leaf_borrowed("");
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            if self.full() {
                if seq.next_element::<serde::de::IgnoredAny>()?.is_none() {
                    return Ok(());
                }
                continue;
            }
            let len = self.path.len();
            self.path.push('[');
            self.path.push_str(itoa::Buffer::new().format(i));
            self.path.push(']');
            let more = seq.next_element_seed(self.child())?;
            self.path.truncate(len);
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
}

/// Appends an object key to the path (after a `.` unless the path is empty).
struct KeyOntoPath<'a>(&'a mut String);

impl<'de> serde::de::DeserializeSeed<'de> for KeyOntoPath<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for KeyOntoPath<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, key: &str) -> Result<(), E> {
        if !self.0.is_empty() {
            self.0.push('.');
        }
        self.0.push_str(key);
        Ok(())
    }
}
