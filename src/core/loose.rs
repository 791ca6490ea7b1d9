//! Loosely typed JSON read without building a `serde_json::Value`: the building blocks of the
//! pod template view (`objects::Template`), whose fields the CRD leaves untyped
//! (`x-kubernetes-preserve-unknown-fields`), so any of them may hold any JSON.
//!
//! Invariants: nothing read here holds more than a bounded part of what it skips. A value of the
//! wrong type is kept only as its JSON text cut at `MAX_RENDERED` bytes; lists are capped like
//! the typed views' (`objects::Capped`); nested content nobody reads is skipped with
//! `IgnoredAny`. A `Value` costs hundreds of bytes per small object (a template list of
//! 100,000 `{"a":0}` made one review hold 168 times its body).

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::core::objects::{Capped, MAX_CONTAINERS, MAX_LIST_ITEMS};

/// The most bytes of JSON text kept of a value of the wrong type (then `...`): enough for every
/// message to show what was written (`is "0", not an integer id`; image messages cut at 200
/// characters, at most 800 bytes), too little for a huge value to be held twice.
pub const MAX_RENDERED: usize = 1024;

/// A JSON value read loosely: `Is` when it is a `T`, otherwise `Not` with its compact JSON text
/// (cut at `MAX_RENDERED` bytes). `null` is `Not("null")`; in an `Option` field it is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loose<T> {
    Is(T),
    Not(String),
}

impl<T> Loose<T> {
    /// The value when it is a `T`.
    pub fn get(&self) -> Option<&T> {
        match self {
            Loose::Is(v) => Some(v),
            Loose::Not(_) => None,
        }
    }
}

/// The scalars `Loose` can hold: each says which JSON scalars it takes (as `Value::as_bool`,
/// `as_i64`, `as_str` do: no coercion; a float such as `1.0` is no integer).
pub trait LooseScalar: Sized {
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_str(_: &str) -> Option<Self> {
        None
    }
}

impl LooseScalar for bool {
    fn from_bool(b: bool) -> Option<Self> {
        Some(b)
    }
}

impl LooseScalar for i64 {
    fn from_i64(n: i64) -> Option<Self> {
        Some(n)
    }
    fn from_u64(n: u64) -> Option<Self> {
        i64::try_from(n).ok()
    }
}

impl LooseScalar for String {
    fn from_str(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
}

impl<'de, T: LooseScalar> Deserialize<'de> for Loose<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: LooseScalar> Visitor<'de> for V<T> {
            type Value = Loose<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Loose<T>, E> {
                Ok(T::from_bool(b).map_or_else(|| Loose::Not(b.to_string()), Loose::Is))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Loose<T>, E> {
                Ok(T::from_i64(n).map_or_else(|| Loose::Not(n.to_string()), Loose::Is))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Loose<T>, E> {
                Ok(T::from_u64(n).map_or_else(|| Loose::Not(n.to_string()), Loose::Is))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Loose<T>, E> {
                Ok(Loose::Not(float_text(n)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Loose<T>, E> {
                Ok(T::from_str(s).map_or_else(
                    || {
                        let mut text = Text::default();
                        text.string(s);
                        Loose::Not(text.finish())
                    },
                    Loose::Is,
                ))
            }
            fn visit_unit<E>(self) -> Result<Loose<T>, E> {
                Ok(Loose::Not("null".into()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Loose<T>, A::Error> {
                let mut text = Text::default();
                Render(&mut text).visit_seq(seq)?;
                Ok(Loose::Not(text.finish()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Loose<T>, A::Error> {
                let mut text = Text::default();
                Render(&mut text).visit_map(map)?;
                Ok(Loose::Not(text.finish()))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A list read loosely: `List` (capped at `MAX_LIST_ITEMS`, refused past it like
/// `objects::capped_list`), or `Not` with the JSON text of whatever else it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LooseList<T> {
    List(Vec<T>),
    Not(String),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LooseList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = LooseList<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<LooseList<T>, A::Error> {
                Capped::<T>::new(MAX_LIST_ITEMS, "items", "objects")
                    .visit_seq(seq)
                    .map(LooseList::List)
            }
            // Anything else: its text, as `Loose` keeps it.
            fn visit_bool<E>(self, b: bool) -> Result<LooseList<T>, E> {
                Ok(LooseList::Not(b.to_string()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<LooseList<T>, E> {
                Ok(LooseList::Not(n.to_string()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<LooseList<T>, E> {
                Ok(LooseList::Not(n.to_string()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<LooseList<T>, E> {
                Ok(LooseList::Not(float_text(n)))
            }
            fn visit_str<E>(self, s: &str) -> Result<LooseList<T>, E> {
                let mut text = Text::default();
                text.string(s);
                Ok(LooseList::Not(text.finish()))
            }
            fn visit_unit<E>(self) -> Result<LooseList<T>, E> {
                Ok(LooseList::Not("null".into()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LooseList<T>, A::Error> {
                let mut text = Text::default();
                Render(&mut text).visit_map(map)?;
                Ok(LooseList::Not(text.finish()))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A struct-typed field of a loose object: `Some` when it is a JSON object, `None` when it is
/// anything else (skipped, as `Value::get` on a non-object finds nothing). Errors inside the
/// object (a list past its cap, a field written twice) are still errors.
#[derive(Debug, Clone)]
pub struct LooseObject<T>(pub Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LooseObject<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = LooseObject<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LooseObject<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|t| LooseObject(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<LooseObject<T>, A::Error> {
                skip_seq(seq).map(|()| LooseObject(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<LooseObject<T>, E> {
                Ok(LooseObject(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<LooseObject<T>, E> {
                Ok(LooseObject(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<LooseObject<T>, E> {
                Ok(LooseObject(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<LooseObject<T>, E> {
                Ok(LooseObject(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<LooseObject<T>, E> {
                Ok(LooseObject(None))
            }
            fn visit_unit<E>(self) -> Result<LooseObject<T>, E> {
                Ok(LooseObject(None))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// `LooseObject` for a field (`deserialize_with`).
pub fn loose_object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    LooseObject::deserialize(d).map(|o| o.0)
}

/// A list of objects in a loose object (`volumes`, `ports`): read item by item and refused past
/// `MAX_LIST_ITEMS` like `objects::capped_list`; an item that is not an object is read as
/// `T::default()` (so the others keep their index), and a field that is not a list as empty.
pub fn loose_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    loose_items(d, MAX_LIST_ITEMS, "items", "objects")
}

/// `loose_list` for a list of containers: refused past `MAX_CONTAINERS`, as
/// `objects::containers_only` is.
pub fn loose_containers<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    loose_items(d, MAX_CONTAINERS, "containers", "pods")
}

fn loose_items<'de, D, T>(
    d: D,
    max: usize,
    items: &'static str,
    split: &'static str,
) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    struct V<T>(Capped<LooseObject<T>>);
    impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<T>, A::Error> {
            let items = self.0.visit_seq(seq)?;
            Ok(items.into_iter().map(|o| o.0.unwrap_or_default()).collect())
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
            skip_map(map).map(|()| Vec::new())
        }
        fn visit_bool<E>(self, _: bool) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_i64<E>(self, _: i64) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_u64<E>(self, _: u64) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_f64<E>(self, _: f64) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_str<E>(self, _: &str) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_unit<E>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(V(Capped::new(max, items, split)))
}

/// Whether a field is a list with at least one item (`capabilities.add`); the items are
/// skipped, and anything but a list is `false`.
pub fn non_empty_list<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    list_has_items_else(d, false)
}

/// Whether a field is set in the sense of `Value::as_array().is_none_or(|a| !a.is_empty())`:
/// anything but an empty list, `null` included (`ownerReferences` of a template's metadata).
pub fn set_unless_empty_list<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    list_has_items_else(d, true)
}

/// Whether a list has at least one item (its items skipped); `otherwise` for anything else.
fn list_has_items_else<'de, D: Deserializer<'de>>(d: D, otherwise: bool) -> Result<bool, D::Error> {
    struct V(bool);
    impl<'de> Visitor<'de> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            let any = seq.next_element::<IgnoredAny>()?.is_some();
            skip_seq(seq)?;
            Ok(any)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
            skip_map(map).map(|()| self.0)
        }
        fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
            Ok(self.0)
        }
        fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
            Ok(self.0)
        }
        fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
            Ok(self.0)
        }
        fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
            Ok(self.0)
        }
        fn visit_str<E>(self, _: &str) -> Result<bool, E> {
            Ok(self.0)
        }
        fn visit_unit<E>(self) -> Result<bool, E> {
            Ok(self.0)
        }
    }
    d.deserialize_any(V(otherwise))
}

/// The entries of a map whose key `keep` accepts, each value as its JSON text (cut at
/// `MAX_RENDERED`), sorted by key with the last of a repeated key winning, as in a `Value`.
/// The other entries are skipped; a field that is not a map is read as empty.
pub fn rendered_entries<'de, D: Deserializer<'de>>(
    d: D,
    keep: fn(&str) -> bool,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    type Entries = std::collections::BTreeMap<String, String>;
    struct V(fn(&str) -> bool);
    impl<'de> Visitor<'de> for V {
        type Value = Entries;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
            let mut out = Entries::new();
            while let Some(key) = map.next_key::<String>()? {
                if (self.0)(&key) {
                    let mut text = Text::default();
                    map.next_value_seed(Render(&mut text))?;
                    out.insert(key, text.finish());
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(out)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Entries, A::Error> {
            skip_seq(seq).map(|()| Entries::new())
        }
        fn visit_bool<E>(self, _: bool) -> Result<Entries, E> {
            Ok(Entries::new())
        }
        fn visit_i64<E>(self, _: i64) -> Result<Entries, E> {
            Ok(Entries::new())
        }
        fn visit_u64<E>(self, _: u64) -> Result<Entries, E> {
            Ok(Entries::new())
        }
        fn visit_f64<E>(self, _: f64) -> Result<Entries, E> {
            Ok(Entries::new())
        }
        fn visit_str<E>(self, _: &str) -> Result<Entries, E> {
            Ok(Entries::new())
        }
        fn visit_unit<E>(self) -> Result<Entries, E> {
            Ok(Entries::new())
        }
    }
    d.deserialize_any(V(keep))
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A float as `Value` prints it.
fn float_text(n: f64) -> String {
    serde_json::Number::from_f64(n).map_or_else(|| "null".into(), |n| n.to_string())
}

/// JSON text being written, kept to `MAX_RENDERED` bytes; `cut` once something was left out.
#[derive(Default)]
struct Text {
    out: String,
    cut: bool,
}

impl Text {
    fn push(&mut self, s: &str) {
        let room = MAX_RENDERED.saturating_sub(self.out.len());
        if s.len() <= room {
            self.out.push_str(s);
        } else {
            self.out.push_str(&s[..floor_boundary(s, room)]);
            self.cut = true;
        }
    }

    /// A JSON string, escaped as serde_json writes it; only the part that can fit is escaped.
    fn string(&mut self, s: &str) {
        let room = MAX_RENDERED.saturating_sub(self.out.len());
        let part = &s[..floor_boundary(s, room.min(s.len()))];
        self.push(&serde_json::to_string(part).unwrap_or_default());
        if part.len() < s.len() {
            self.cut = true;
        }
    }

    fn finish(mut self) -> String {
        if self.cut {
            self.out.push_str("...");
        }
        self.out
    }
}

/// The largest char boundary of `s` at or below `at`.
fn floor_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Writes the compact JSON text of any value into a `Text`, skipping what no longer fits.
struct Render<'t>(&'t mut Text);

impl<'de> DeserializeSeed<'de> for Render<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// An item of a list or a key of a map: `Render` after a comma unless it is the first.
struct Item<'t> {
    text: &'t mut Text,
    first: bool,
}

impl<'de> DeserializeSeed<'de> for Item<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if !self.first {
            self.text.push(",");
        }
        d.deserialize_any(Render(self.text))
    }
}

impl<'de> Visitor<'de> for Render<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.0.push(if b { "true" } else { "false" });
        Ok(())
    }
    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        self.0.push(&n.to_string());
        Ok(())
    }
    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        self.0.push(&n.to_string());
        Ok(())
    }
    fn visit_f64<E>(self, n: f64) -> Result<(), E> {
        self.0.push(&float_text(n));
        Ok(())
    }
    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.0.string(s);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.push("null");
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let text = self.0;
        text.push("[");
        let mut first = true;
        while !text.cut {
            let item = Item {
                text: &mut *text,
                first,
            };
            if seq.next_element_seed(item)?.is_none() {
                text.push("]");
                return Ok(());
            }
            first = false;
        }
        skip_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let text = self.0;
        text.push("{");
        let mut first = true;
        while !text.cut {
            let key = Item {
                text: &mut *text,
                first,
            };
            if map.next_key_seed(key)?.is_none() {
                text.push("}");
                return Ok(());
            }
            text.push(":");
            map.next_value_seed(Render(&mut *text))?;
            first = false;
        }
        skip_map(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn loose<T: LooseScalar + fmt::Debug>(v: &Value) -> Loose<T> {
        // Both from text (as the webhook reads) and from a `Value` (as tests build views).
        let from_text: Loose<T> = serde_json::from_str(&v.to_string()).unwrap();
        let from_value: Loose<T> = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(format!("{from_text:?}"), format!("{from_value:?}"), "{v}");
        from_text
    }

    fn not<T: LooseScalar + fmt::Debug>(v: &Value) -> String {
        match loose::<T>(v) {
            Loose::Not(text) => text,
            Loose::Is(_) => panic!("{v} was read as the type"),
        }
    }

    #[test]
    fn a_loose_scalar_keeps_its_type_and_renders_anything_else_as_a_value_prints() {
        assert_eq!(loose::<bool>(&json!(true)), Loose::Is(true));
        assert_eq!(loose::<i64>(&json!(-3)), Loose::Is(-3));
        assert_eq!(loose::<i64>(&json!(u64::MAX >> 1)), Loose::Is(i64::MAX));
        assert_eq!(loose::<String>(&json!("a")), Loose::Is("a".to_string()));
        for v in [
            json!("true"),
            json!("0"),
            json!("a \"quoted\"\n\u{1}"),
            json!(1),
            json!(0.5),
            json!(1.0),
            json!(1e300),
            json!(u64::MAX),
            json!(null),
            json!([1, "x", [], {}]),
            json!({"a": [true, null]}),
        ] {
            let expected = v.to_string();
            if !v.is_boolean() {
                assert_eq!(not::<bool>(&v), expected);
            }
            if !v.is_i64() {
                assert_eq!(not::<i64>(&v), expected);
            }
            if !v.is_string() {
                assert_eq!(not::<String>(&v), expected);
            }
        }
    }

    #[test]
    fn a_long_value_of_the_wrong_type_is_kept_cut() {
        let long = "é".repeat(5000);
        for v in [
            json!(long),
            json!([long]),
            json!(vec![json!({"a": 0}); 100_000]),
            json!({"k": long, "l": [1, 2]}),
        ] {
            let text = not::<i64>(&v);
            assert!(text.len() <= MAX_RENDERED + 3, "{}", text.len());
            assert!(text.ends_with("..."), "{text:.40}");
            let full = v.to_string();
            assert!(full.starts_with(text.trim_end_matches("...")), "{text:.40}");
        }
        // At the limit exactly: nothing cut.
        let fits = "a".repeat(MAX_RENDERED - 2);
        assert_eq!(not::<i64>(&json!(fits)), json!(fits).to_string());
    }

    #[derive(Deserialize, Debug, Default)]
    #[serde(default)]
    struct Outer {
        #[serde(deserialize_with = "loose_object")]
        inner: Option<Inner>,
        #[serde(deserialize_with = "loose_list")]
        items: Vec<Inner>,
        #[serde(deserialize_with = "non_empty_list")]
        add: bool,
        #[serde(deserialize_with = "set_unless_empty_list")]
        owners: bool,
        ids: Option<LooseList<Option<Loose<i64>>>>,
    }

    #[derive(Deserialize, Debug, Default, PartialEq)]
    #[serde(default)]
    struct Inner {
        flag: Option<Loose<bool>>,
    }

    fn outer(text: &str) -> Result<Outer, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn loose_objects_and_lists_skip_other_types_and_keep_their_limits() {
        for other in ["1", "\"x\"", "true", "null", "1.5"] {
            let o = outer(&format!(
                r#"{{"inner":{other},"items":{other},"add":{other}}}"#
            ))
            .unwrap();
            assert!(o.inner.is_none() && o.items.is_empty() && !o.add, "{other}");
        }
        // An object where a list belongs, and a list where an object belongs.
        let o = outer(r#"{"inner":[{"flag":true}],"items":{"flag":true},"add":{"a":1}}"#).unwrap();
        assert!(o.inner.is_none() && o.items.is_empty() && !o.add);
        // Items that are not objects keep their place.
        let o = outer(r#"{"items":[1,{"flag":true},[]]}"#).unwrap();
        assert_eq!(o.items.len(), 3);
        assert_eq!(o.items[1].flag, Some(Loose::Is(true)));
        assert_eq!(o.items[0], Inner::default());
        let items = |n: usize| vec!["{\"x\":[1]}"; n].join(",");
        assert_eq!(
            outer(&format!(r#"{{"items":[{}]}}"#, items(MAX_LIST_ITEMS)))
                .unwrap()
                .items
                .len(),
            MAX_LIST_ITEMS
        );
        let past = outer(&format!(r#"{{"items":[{}]}}"#, items(MAX_LIST_ITEMS + 1))).unwrap_err();
        assert!(past.contains("more than 1024 items in one list"), "{past}");
        // capabilities.add: only a list with an item counts.
        assert!(outer(r#"{"add":[null]}"#).unwrap().add);
        assert!(!outer(r#"{"add":[]}"#).unwrap().add);
        // ownerReferences: anything but an empty list is set, null included; absent is not.
        for (text, set) in [
            ("[]", false),
            ("[{}]", true),
            ("null", true),
            ("{}", true),
            ("0", true),
        ] {
            assert_eq!(
                outer(&format!(r#"{{"owners":{text}}}"#)).unwrap().owners,
                set,
                "{text}"
            );
        }
        assert!(!outer("{}").unwrap().owners);
        // A loose list: a list (capped), or the text of what it is instead.
        let o = outer(r#"{"ids":[1,null,"2"]}"#).unwrap();
        assert_eq!(
            o.ids,
            Some(LooseList::List(vec![
                Some(Loose::Is(1)),
                None,
                Some(Loose::Not("\"2\"".into()))
            ]))
        );
        assert_eq!(
            outer(r#"{"ids":{"a":1}}"#).unwrap().ids,
            Some(LooseList::Not(r#"{"a":1}"#.into()))
        );
        assert!(outer(r#"{"ids":null}"#).unwrap().ids.is_none());
        let past = outer(&format!(
            r#"{{"ids":[{}]}}"#,
            vec!["0"; MAX_LIST_ITEMS + 1].join(",")
        ))
        .unwrap_err();
        assert!(past.contains("more than 1024 items"), "{past}");
        // Errors inside a loose object are still errors.
        assert!(outer(r#"{"inner":{"flag":true,"flag":false}}"#).is_err());
    }

    #[test]
    fn rendered_entries_keep_the_matching_keys_sorted_with_the_last_value() {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Labels {
            #[serde(deserialize_with = "kept")]
            labels: std::collections::BTreeMap<String, String>,
        }
        fn kept<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
            rendered_entries(d, |k| k.starts_with("p/"))
        }
        let l: Labels =
            serde_json::from_str(r#"{"labels":{"p/b":"x","q":[1],"p/a":{"z":1,"y":[2]},"p/b":7}}"#)
                .unwrap();
        let entries: Vec<(&str, &str)> = l
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(entries, vec![("p/a", r#"{"z":1,"y":[2]}"#), ("p/b", "7")]);
        for other in ["[1]", "1", "null"] {
            let l: Labels = serde_json::from_str(&format!(r#"{{"labels":{other}}}"#)).unwrap();
            assert!(l.labels.is_empty(), "{other}");
        }
    }
}
