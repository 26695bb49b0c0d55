//! A serde deserializer over the configuration tree. It does what .NET's binder does and
//! serde's JSON deserializer does not: struct keys match case-insensitively, booleans and
//! numbers may be strings (`"true"`, `"10"`), lists are indexed children ordered numerically
//! (gaps allowed), and an empty value counts as absent for optional settings.

use super::tree::Node;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum DeError {
    /// A key the section does not know.
    UnknownKey(String),
    Message(String),
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeError::UnknownKey(k) => write!(f, "unknown key '{k}'"),
            DeError::Message(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::Message(msg.to_string())
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        DeError::UnknownKey(field.to_string())
    }
}

fn describe(node: &Node) -> String {
    match node {
        Node::Leaf(v) => format!("'{v}'"),
        Node::Branch(_) => "a section".into(),
    }
}

fn leaf<'de>(node: &'de Node, what: &str) -> Result<&'de str, DeError> {
    match node {
        Node::Leaf(v) => Ok(v.as_str()),
        Node::Branch(_) => Err(DeError::Message(format!(
            "expected {what}, found a section"
        ))),
    }
}

/// .NET `bool.TryParse`: `true`/`false`, any case, surrounding whitespace allowed.
pub fn parse_bool(s: &str) -> Option<bool> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Children of a branch whose keys are all indexes, in numeric order.
fn indexed(children: &[(String, Node)]) -> Option<Vec<&Node>> {
    let mut items = Vec::with_capacity(children.len());
    for (k, n) in children {
        items.push((k.parse::<u64>().ok()?, n));
    }
    items.sort_by_key(|(i, _)| *i);
    Some(items.into_iter().map(|(_, n)| n).collect())
}

pub struct NodeDe<'de>(pub &'de Node);

macro_rules! number {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let s = leaf(self.0, "a number")?;
            let n: $ty = s
                .trim()
                .parse()
                .map_err(|_| DeError::Message(format!("expected a number, found '{s}'")))?;
            visitor.$visit(n)
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Node::Leaf(v) => visitor.visit_borrowed_str(v),
            Node::Branch(c) => match indexed(c) {
                Some(items) if !c.is_empty() => visitor.visit_seq(Seq(items.into_iter())),
                _ => visitor.visit_map(Map::plain(c)),
            },
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let s = leaf(self.0, "true or false")?;
        match parse_bool(s) {
            Some(b) => visitor.visit_bool(b),
            None => Err(DeError::Message(format!(
                "expected true or false, found '{s}'"
            ))),
        }
    }

    number!(deserialize_u8, visit_u8, u8);
    number!(deserialize_u16, visit_u16, u16);
    number!(deserialize_u32, visit_u32, u32);
    number!(deserialize_u64, visit_u64, u64);
    number!(deserialize_i8, visit_i8, i8);
    number!(deserialize_i16, visit_i16, i16);
    number!(deserialize_i32, visit_i32, i32);
    number!(deserialize_i64, visit_i64, i64);
    number!(deserialize_f32, visit_f32, f32);
    number!(deserialize_f64, visit_f64, f64);

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(leaf(self.0, "a value")?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Node::Leaf(v) if v.trim().is_empty() => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Node::Leaf(v) if v.trim().is_empty() => visitor.visit_seq(Seq(Vec::new().into_iter())),
            Node::Branch(c) => match indexed(c) {
                Some(items) => visitor.visit_seq(Seq(items.into_iter())),
                None => Err(DeError::Message(
                    "expected a list (Key__0, Key__1, … or a JSON array)".into(),
                )),
            },
            other => Err(DeError::Message(format!(
                "expected a list (Key__0, Key__1, … or a JSON array), found {}",
                describe(other)
            ))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Node::Branch(c) => visitor.visit_map(Map::plain(c)),
            Node::Leaf(v) if v.trim().is_empty() => visitor.visit_map(Map::plain(&[])),
            other => Err(DeError::Message(format!(
                "expected a section, found {}",
                describe(other)
            ))),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Node::Branch(c) => visitor.visit_map(Map {
                iter: c.iter(),
                fields,
                value: None,
            }),
            Node::Leaf(v) if v.trim().is_empty() => visitor.visit_map(Map::plain(&[])),
            other => Err(DeError::Message(format!(
                "expected a section, found {}",
                describe(other)
            ))),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let s = leaf(self.0, "a value")?;
        visitor.visit_enum(s.into_deserializer())
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct Seq<I>(I);

impl<'de, I: Iterator<Item = &'de Node>> SeqAccess<'de> for Seq<I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.0.next() {
            Some(n) => seed.deserialize(NodeDe(n)).map(Some),
            None => Ok(None),
        }
    }
}

struct Map<'de> {
    iter: std::slice::Iter<'de, (String, Node)>,
    /// Struct field names: a key matching one ignoring case is reported with its spelling.
    fields: &'static [&'static str],
    value: Option<&'de Node>,
}

impl<'de> Map<'de> {
    fn plain(children: &'de [(String, Node)]) -> Self {
        Map {
            iter: children.iter(),
            fields: &[],
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for Map<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((k, v)) = self.iter.next() else {
            return Ok(None);
        };
        self.value = Some(v);
        let canonical: &'de str = self
            .fields
            .iter()
            .find(|f| f.eq_ignore_ascii_case(k))
            .copied()
            .unwrap_or(k.as_str());
        seed.deserialize(de::value::BorrowedStrDeserializer::new(canonical))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let v = self
            .value
            .take()
            .ok_or_else(|| DeError::Message("value without a key".into()))?;
        seed.deserialize(NodeDe(v))
    }
}
