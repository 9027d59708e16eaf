//! JSON as Python writes it: `json.dump` writes a float that is not finite as the bare tokens
//! `NaN`, `Infinity` and `-Infinity`, which strict JSON (and serde_json) refuses. A config written
//! by Python with `"lr": float("nan")` should be refused by the check that names `lr`, not by the
//! parser with "expected value at line 3 column 37".
//!
//! How: [`parse`] (and [`from_str`]) rewrite those three tokens, outside strings, into marker
//! strings before serde_json parses the text, and correct the column of any error serde_json then
//! reports, so positions still point into the text as written. A marker reads as the float it
//! stands for wherever a float is asked for: in [`from_value`] (what
//! [`crate::OptimizerConfig::from_json`] parses its fields with), in [`as_f64`] (the schedules'
//! number accessor) and in [`Float`]. Everywhere else it is a string, and refused as one would be.
//! Strict JSON parses exactly as before; repeated keys are refused (see [`parse`]).

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Python's tokens, the marker string each becomes, and the float it stands for. A marker starts
/// with a NUL character, which JSON text can hold only escaped (`"\u0000NaN"`): no config holds it
/// by accident.
const TOKENS: [(&str, &str, f64); 3] = [
    ("-Infinity", "\0-Infinity", f64::NEG_INFINITY),
    ("Infinity", "\0Infinity", f64::INFINITY),
    ("NaN", "\0NaN", f64::NAN),
];

/// The float a marker string stands for, if `s` is one.
fn marker(s: &str) -> Option<f64> {
    TOKENS.iter().find(|(_, m, _)| *m == s).map(|&(_, _, x)| x)
}

/// The number `v` holds, a marker included: `serde_json::Value::as_f64` that also reads Python's
/// `NaN`, `Infinity` and `-Infinity` (as [`parse`] leaves them).
pub fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => marker(s),
        _ => v.as_f64(),
    }
}

/// `v` as JSON text, markers written back as Python's tokens (for messages).
pub fn show(v: &Value) -> String {
    let mut text = v.to_string();
    for (token, _, _) in TOKENS {
        text = text.replace(&format!("\"\\u0000{token}\""), token);
    }
    text
}

/// Where the rewrite made the text longer: (line from 1, column just past the marker in the
/// rewritten text, bytes added).
struct Rewrites(Vec<(usize, usize, usize)>);

/// Rewrites Python's tokens outside strings into marker strings (`NaN` -> `"\u0000NaN"`).
fn rewrite(text: &str) -> (String, Rewrites) {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut rewrites = Vec::new();
    let (mut line, mut line_start) = (1, 0);
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if let Some((token, _, _)) = TOKENS.iter().find(|(t, _, _)| bytes[i..].starts_with(t.as_bytes())) {
            let written = format!("\"\\u0000{token}\"");
            out.push_str(&written);
            rewrites.push((line, out.len() - line_start, written.len() - token.len()));
            i += token.len();
            continue;
        }
        if b == b'\n' {
            line += 1;
            line_start = out.len() + 1;
        }
        // Copy the whole character (tokens and quotes are ASCII, so `i` stays on a boundary).
        let len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + len]);
        i += len;
    }
    (out, Rewrites(rewrites))
}

impl Rewrites {
    /// serde_json's error on the rewritten text, its column moved back to the text as written.
    fn correct(&self, e: serde_json::Error) -> serde_json::Error {
        let (line, column) = (e.line(), e.column());
        if line == 0 || self.0.is_empty() {
            return e;
        }
        let added: usize = self.0.iter().filter(|&&(l, end, _)| l == line && end <= column).map(|&(_, _, n)| n).sum();
        let message = e.to_string();
        let message = message.strip_suffix(&format!(" at line {line} column {column}")).unwrap_or(&message);
        de::Error::custom(format!("{message} at line {line} column {}", column - added))
    }
}

/// Parses JSON text as Python's `json.dump` writes it (`NaN`, `Infinity`, `-Infinity` allowed,
/// left in the value as markers that [`as_f64`] and [`from_value`] read as floats) into a value
/// that repeats no key in any object: serde_json's `Value` keeps the last of two equal keys, so
/// `{"lr": 0.1, "lr": 10}` would run with 10 and say nothing; in a constructor's arguments a
/// repeated key is a mistake, not an override.
///
/// # Errors
/// serde_json's error for text that is not JSON, or that repeats a key (naming it and where).
pub fn parse(text: &str) -> serde_json::Result<Value> {
    let (text, rewrites) = rewrite(text);
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    let value = unique_keys(&mut deserializer).and_then(|v| deserializer.end().map(|()| v));
    value.map_err(|e| rewrites.correct(e))
}

/// Deserializes `T` from JSON text as Python writes it: as `serde_json::from_str` on the text with
/// Python's tokens made markers (see [`parse`]). Read the floats that may be tokens through
/// [`Float`], values through [`unique_keys`].
///
/// # Errors
/// serde_json's error, its position in the text as written.
pub fn from_str<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    let (text, rewrites) = rewrite(text);
    serde_json::from_str(&text).map_err(|e| rewrites.correct(e))
}

/// Deserializes `T` from a value that may hold markers, reading a marker as its float wherever a
/// number is asked for (`f64`, `f32`, in tuples, sequences and maps alike). Otherwise as
/// `serde_json::from_value`, with its messages.
///
/// # Errors
/// serde_json's error: an unknown field, a wrong type, a wrong length.
pub fn from_value<T: DeserializeOwned>(value: Value) -> serde_json::Result<T> {
    T::deserialize(PyValue(value))
}

/// A float read from Python's JSON: a number or a marker (`NaN`, `Infinity`, `-Infinity`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Float(pub f64);

impl<'de> Deserialize<'de> for Float {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FloatVisitor;
        impl Visitor<'_> for FloatVisitor {
            type Value = Float;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Float, E> {
                Ok(Float(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Float, E> {
                Ok(Float(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Float, E> {
                Ok(Float(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Float, E> {
                marker(v).map(Float).ok_or_else(|| E::invalid_type(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(FloatVisitor)
    }
}

impl From<Float> for f64 {
    fn from(x: Float) -> f64 {
        x.0
    }
}

/// As serde reads an `f32` from JSON: the decimal rounded to f64, then to f32.
impl From<Float> for f32 {
    fn from(x: Float) -> f32 {
        x.0 as f32
    }
}

/// Deserializes a JSON value that repeats no key in any of its objects (see [`parse`]); markers
/// stay strings in it.
///
/// # Errors
/// The deserializer's error, or a custom one naming a repeated key.
pub fn unique_keys<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    deserializer.deserialize_any(UniqueKeys)
}

/// The visitor behind [`unique_keys`]: builds a `serde_json::Value` as serde_json's own does,
/// refusing a key an object already holds.
struct UniqueKeys;

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        unique_keys(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut values = Vec::new();
        while let Some(Unique(value)) = seq.next_element()? {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key \"{key}\" (say it once)")));
            }
            let Unique(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A nested value, checked by the same visitor.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        unique_keys(d).map(Unique)
    }
}

/// A `serde_json::Value` as a deserializer that reads markers as floats, down through arrays and
/// objects (serde_json's own hands nested values to itself, where a marker is only a string).
struct PyValue(Value);

impl<'de> Deserializer<'de> for PyValue {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> serde_json::Result<V::Value> {
        match self.0 {
            Value::String(s) => match marker(&s) {
                Some(x) => visitor.visit_f64(x),
                None => visitor.visit_string(s),
            },
            Value::Array(values) => {
                let len = values.len();
                let mut seq = Seq(values.into_iter());
                let out = visitor.visit_seq(&mut seq)?;
                match seq.0.len() {
                    0 => Ok(out),
                    _ => Err(de::Error::invalid_length(len, &"fewer elements in array")),
                }
            }
            Value::Object(object) => {
                let len = object.len();
                let mut map = Map { entries: object.into_iter(), value: None };
                let out = visitor.visit_map(&mut map)?;
                match map.entries.len() {
                    0 => Ok(out),
                    _ => Err(de::Error::invalid_length(len, &"fewer elements in map")),
                }
            }
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> serde_json::Result<V::Value> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> serde_json::Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> serde_json::Result<V::Value> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct Seq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Seq {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> serde_json::Result<Option<T::Value>> {
        self.0.next().map(|v| seed.deserialize(PyValue(v))).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Map {
    entries: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl<'de> MapAccess<'de> for Map {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> serde_json::Result<Option<K::Value>> {
        let Some((key, value)) = self.entries.next() else { return Ok(None) };
        self.value = Some(value);
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> serde_json::Result<V::Value> {
        let value = self.value.take().ok_or_else(|| de::Error::custom("a map value asked for before its key"))?;
        seed.deserialize(PyValue(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_outside_strings_become_floats_and_strings_stay() {
        let v = parse(r#"{"a": NaN, "b": [Infinity, -Infinity, 1.5], "c": "NaN -Infinity \" NaN"}"#).unwrap();
        assert!(as_f64(&v["a"]).unwrap().is_nan());
        assert_eq!(as_f64(&v["b"][0]), Some(f64::INFINITY));
        assert_eq!(as_f64(&v["b"][1]), Some(f64::NEG_INFINITY));
        assert_eq!(as_f64(&v["b"][2]), Some(1.5));
        assert_eq!(v["c"], "NaN -Infinity \" NaN");
        assert_eq!(show(&v["b"]), "[Infinity,-Infinity,1.5]");
        let (pair, x): ((f64, f64), Option<f32>) = from_value(v["b"].clone()).map(|(a, b, c)| ((a, b), c)).unwrap();
        assert_eq!(pair, (f64::INFINITY, f64::NEG_INFINITY));
        assert_eq!(x, Some(1.5));
        // Rows of floats read straight from the text (as a case file's `grads`).
        let rows: Vec<Vec<Float>> = from_str("[[NaN, -Infinity], [1, 2.5]]").unwrap();
        assert!(rows[0][0].0.is_nan());
        assert_eq!((rows[0][1].0, f32::from(rows[1][1])), (f64::NEG_INFINITY, 2.5));
        let strict = r#"{"a": [1, 2.5e-3, true, null, "x\\"]}"#;
        assert_eq!(parse(strict).unwrap(), serde_json::from_str::<Value>(strict).unwrap());
    }

    #[test]
    fn errors_keep_their_position_in_the_text_as_written() {
        // `NaN` and `1.0` are as long: serde_json's column in the strict text is the right one.
        let text = "{\"a\": NaN, \"b\": NaN, x}";
        let strict = serde_json::from_str::<Value>(&text.replace("NaN", "1.0")).unwrap_err().to_string();
        assert_eq!(parse(text).unwrap_err().to_string(), strict);
        assert!(strict.ends_with("at line 1 column 22"), "{strict}");
        let repeated = parse("{\"a\": NaN,\n \"a\": 1}").unwrap_err().to_string();
        assert!(repeated.starts_with("duplicate key \"a\" (say it once) at line 2"), "{repeated}");
    }

    #[test]
    fn a_marker_where_no_float_is_asked_for_is_refused_by_type() {
        let v = parse("[NaN]").unwrap();
        let e = from_value::<Vec<bool>>(v.clone()).unwrap_err().to_string();
        assert_eq!(e, "invalid type: floating point `NaN`, expected a boolean");
        let e = from_value::<(f64, f64)>(parse("[1, 2, NaN]").unwrap()).unwrap_err().to_string();
        assert_eq!(e, "invalid length 3, expected fewer elements in array");
        let e = from_value::<Vec<Float>>(parse(r#"["nan"]"#).unwrap()).unwrap_err().to_string();
        assert_eq!(e, "invalid type: string \"nan\", expected a number");
    }
}
