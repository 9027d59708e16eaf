//! Strict parsing: a value is accepted only in the form a writer writes it.

use serde::Serialize;

use crate::kernel::StateArray;

/// The values a valid run can hold in `array`: finite, and not negative where the kernel never
/// makes it negative. Names the first value that is not.
pub(super) fn check_values(array: &StateArray, values: impl Iterator<Item = f32>) -> std::result::Result<(), String> {
    for (i, x) in values.enumerate() {
        if !x.is_finite() {
            return Err(format!("element {i} is {x}: optimizer state is always finite"));
        }
        if array.non_negative && x < 0.0 {
            return Err(format!("element {i} is {x}, but {} is never negative", array.name));
        }
    }
    Ok(())
}

/// A number as a writer writes it: decimal digits, no sign, no leading zero ("007" is refused).
pub(super) fn canonical_number<T: std::str::FromStr + ToString>(text: &str) -> Option<T> {
    text.parse::<T>().ok().filter(|n| n.to_string() == text)
}

/// Parses a metadata entry and checks that it holds exactly what a writer writes: no unknown key
/// (serde names it), none missing (an `Option` field reads a missing key as `None`, and an
/// internally tagged unit variant such as `{"kind":"Pure"}` ignores extra keys).
pub(super) fn parse_as_written<T: Serialize + serde::de::DeserializeOwned>(
    text: &str,
) -> std::result::Result<T, String> {
    let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let parsed: T = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
    let written = serde_json::to_value(&parsed).map_err(|e| e.to_string())?;
    match first_difference(&raw, &written, "") {
        Some(difference) => Err(difference),
        None => Ok(parsed),
    }
}

/// Where `found` differs from `written` (what a writer writes for the same values), named by its
/// path: a key too many or too few, or a value in another form (`1` where a writer writes `1.0`).
pub(super) fn first_difference(found: &serde_json::Value, written: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    let join = |key: &dyn std::fmt::Display| if at.is_empty() { key.to_string() } else { format!("{at}.{key}") };
    match (found, written) {
        (Value::Object(f), Value::Object(w)) => {
            if let Some(key) = f.keys().find(|k| !w.contains_key(*k)) {
                return Some(format!("{} is not a key a writer writes", join(key)));
            }
            if let Some(key) = w.keys().find(|k| !f.contains_key(*k)) {
                return Some(format!("{} is missing", join(key)));
            }
            f.iter().find_map(|(k, v)| first_difference(v, &w[k], &join(k)))
        }
        (Value::Array(f), Value::Array(w)) if f.len() == w.len() => {
            f.iter().zip(w).enumerate().find_map(|(i, (f, w))| first_difference(f, w, &format!("{at}[{i}]")))
        }
        _ if found == written => None,
        _ => Some(format!(
            "{} is {found}, which a writer writes as {written}",
            if at.is_empty() { "the value" } else { at }
        )),
    }
}
