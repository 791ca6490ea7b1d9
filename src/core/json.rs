//! JSON texts compared and measured without building them into trees. A `serde_json::Value`
//! costs hundreds of bytes for an object of a few bytes of text (`{"a":0}`), so a review that
//! parsed a user's list into one could be made to hold a hundred times its body. These read the
//! text one level at a time, borrowing from it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// How many levels `same_json` reads before it compares the rest as text. Kubernetes objects
/// nest about a dozen levels (a pod template's container's security context is 8 below a
/// SparkApplication's `spec`); below this, a difference in text is taken as a change.
pub const SAME_JSON_DEPTH: usize = 32;

/// Whether the JSON texts `a` and `b` hold the same value, as `serde_json::Value`'s equality
/// judges it: maps compared by key whatever their order (a key written twice counts once, the
/// last), numbers as serde_json reads them (`1` and `1.0` differ). Text that is not one JSON
/// value is equal to nothing.
///
/// Equal texts are equal without reading. Otherwise each level is read into a map or list of
/// its children's raw texts, and only children whose texts differ are read further: what is held
/// at once is the levels along one path, about ten times the text at worst. Below
/// `SAME_JSON_DEPTH` levels only equal texts are the same: that bounds the recursion (serde_json
/// skips a raw child of any depth) and the work (each level reads its subtree once).
pub fn same_json(a: &str, b: &str) -> bool {
    same_within(a, b, SAME_JSON_DEPTH)
}

fn same_within(a: &str, b: &str, levels: usize) -> bool {
    if a == b {
        return true;
    }
    let Some(below) = levels.checked_sub(1) else {
        return false;
    };
    match (Level::read(a), Level::read(b)) {
        (Some(Level::Map(a)), Some(Level::Map(b))) => {
            a.len() == b.len()
                && a.iter()
                    .zip(&b)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_within(va.get(), vb.get(), below))
        }
        (Some(Level::List(a)), Some(Level::List(b))) => {
            a.len() == b.len()
                && a.iter()
                    .zip(&b)
                    .all(|(x, y)| same_within(x.get(), y.get(), below))
        }
        (Some(Level::Scalar(a)), Some(Level::Scalar(b))) => a == b,
        _ => false,
    }
}

/// Whether two optional raw fields differ as JSON (`same_json`); a missing one differs from a
/// present one.
pub fn raw_differs(a: Option<&RawValue>, b: Option<&RawValue>) -> bool {
    match (a, b) {
        (None, None) => false,
        (Some(a), Some(b)) => !same_json(a.get(), b.get()),
        _ => true,
    }
}

/// How deeply the JSON text `raw` nests arrays and objects (`0` for a scalar, `1` for `[]`).
/// Brackets inside strings do not count. Meant for text already known to be JSON.
pub fn nesting_depth(raw: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in raw.as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// One level of a JSON text: its children kept as raw text.
enum Level<'t> {
    Map(BTreeMap<Cow<'t, str>, &'t RawValue>),
    List(Vec<&'t RawValue>),
    Scalar(Value),
}

impl<'t> Level<'t> {
    fn read(raw: &'t str) -> Option<Self> {
        let mut de = serde_json::Deserializer::from_str(raw);
        let level = LevelSeed.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(level)
    }
}

struct LevelSeed;

impl<'t> DeserializeSeed<'t> for LevelSeed {
    type Value = Level<'t>;

    fn deserialize<D: Deserializer<'t>>(self, d: D) -> Result<Level<'t>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'t> Visitor<'t> for LevelSeed {
    type Value = Level<'t>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Level<'t>, E> {
        Ok(Level::Scalar(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Level<'t>, E> {
        Ok(Level::Scalar(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Level<'t>, E> {
        Ok(Level::Scalar(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Level<'t>, E> {
        Ok(Level::Scalar(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Level<'t>, E> {
        Ok(Level::Scalar(Value::String(v.to_string())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Level<'t>, E> {
        Ok(Level::Scalar(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'t>>(self, mut seq: A) -> Result<Level<'t>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<&'t RawValue>()? {
            items.push(item);
        }
        Ok(Level::List(items))
    }

    fn visit_map<A: MapAccess<'t>>(self, mut map: A) -> Result<Level<'t>, A::Error> {
        let mut entries = BTreeMap::new();
        while let Some(key) = map.next_key_seed(KeyText)? {
            entries.insert(key, map.next_value::<&'t RawValue>()?);
        }
        Ok(Level::Map(entries))
    }
}

/// A map key, borrowed from the text unless it has escapes.
pub(crate) struct KeyText;

impl<'t> DeserializeSeed<'t> for KeyText {
    type Value = Cow<'t, str>;

    fn deserialize<D: Deserializer<'t>>(self, d: D) -> Result<Cow<'t, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'t> Visitor<'t> for KeyText {
    type Value = Cow<'t, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'t str) -> Result<Cow<'t, str>, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Cow<'t, str>, E> {
        Ok(Cow::Owned(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `same_json` agrees with `Value`'s equality, on texts that differ in every way it reads.
    #[test]
    fn texts_compare_as_their_values_do() {
        let texts = [
            r#"{"a":1,"b":[1,2,{"c":null}]}"#,
            r#"{ "b" : [1, 2, {"c": null}], "a": 1 }"#,
            r#"{"a":1,"b":[1,2,{"c":false}]}"#,
            r#"{"a":1,"b":[2,1,{"c":null}]}"#,
            r#"{"a":1,"b":[1,2,{"c":null}],"d":0}"#,
            r#"{"a":1.0,"b":[1,2,{"c":null}]}"#,
            r#"{"a":0,"a":1,"b":[1,2,{"c":null}]}"#,
            r#"{"\u0061":1,"b":[1,2,{"c":null}]}"#,
            r#"{"a":"1","b":[1,2,{"c":null}]}"#,
            r#"[]"#,
            r#"{}"#,
            r#"null"#,
            r#""x""#,
            r#""\u0078""#,
            r#"-0"#,
            r#"0"#,
        ];
        for a in texts {
            for b in texts {
                let (va, vb): (Value, Value) = (
                    serde_json::from_str(a).unwrap(),
                    serde_json::from_str(b).unwrap(),
                );
                assert_eq!(same_json(a, b), va == vb, "{a} / {b}");
            }
        }
        // Deeper than `SAME_JSON_DEPTH`: the same value written differently counts as a change;
        // far deeper than any stack would hold, the comparison still ends.
        let nested = |depth: usize, spacing: &str| {
            format!(
                "{}1{}",
                "[".repeat(depth),
                format!("{spacing}]").repeat(depth)
            )
        };
        let at = SAME_JSON_DEPTH;
        assert!(same_json(&nested(at, ""), &nested(at, " ")));
        assert!(!same_json(&nested(at + 1, ""), &nested(at + 1, " ")));
        assert!(!same_json(&nested(100_000, ""), &nested(100_000, " ")));
        // Not one JSON value: equal to nothing, itself included when written differently.
        assert!(!same_json("{", "{ "));
        assert!(!same_json("[1] x", "[1]"));
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(nesting_depth("1"), 0);
        assert_eq!(nesting_depth("[]"), 1);
        assert_eq!(nesting_depth(r#"[{"a":[1]},{}]"#), 3);
        assert_eq!(nesting_depth(r#"["[[[\"[[", {"}}": "{{\\"}]"#), 2);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(nesting_depth(&deep), 200);
    }
}
