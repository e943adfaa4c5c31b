//! The records of an import file (CONTRACT §5): one typed struct per `type`, parsed from a
//! line and written back by the dataset generator.

use crate::model::SenderKind;
use crate::time::{Millis, OffsetRule, parse_datetime};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;

/// Serialises as one line of the format, `type` first (the dataset generator writes these).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    Institution(Institution),
    Location(Location),
    Patient(Patient),
    User(User),
    Conversation(Conversation),
    Message(Message),
}

/// A timestamp in the file: RFC 3339 with any offset and up to 9 fraction digits, stored
/// truncated to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ts(pub Millis);

impl<'de> Deserialize<'de> for Ts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_datetime(&s, OffsetRule::Required)
            .map(|i| Ts(i.floor_millis()))
            .ok_or_else(|| de::Error::custom(format!("`{s}` is not an RFC 3339 timestamp")))
    }
}

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::time::Utc(self.0).serialize(s)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Institution {
    pub id: i64,
    pub subdomain: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub id: i64,
    pub institution_id: i64,
    pub name: String,
    pub tz: String,
    pub phone_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Patient {
    pub id: i64,
    pub institution_id: i64,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub foreign_id: Option<String>,
    pub foreign_id_type: Option<String>,
    #[serde(default, deserialize_with = "bio", serialize_with = "bio_out")]
    pub bio: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    pub inactive: bool,
    pub guarantor_id: Option<i64>,
    #[serde(default, deserialize_with = "flag")]
    pub unsubscribe_sms: bool,
    pub last_sync_time: Option<Ts>,
    pub created_at: Option<Ts>,
    pub updated_at: Option<Ts>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: i64,
    pub institution_id: i64,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub image: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Conversation {
    pub id: i64,
    pub location_id: i64,
    pub patient_id: i64,
    pub created_at: Ts,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub id: i64,
    pub conversation_id: i64,
    pub body: String,
    pub created_at: Ts,
    pub updated_at: Option<Ts>,
    pub sender: SenderRef,
    #[serde(default, deserialize_with = "seen_by", serialize_with = "seen_by_out")]
    pub seen_by: Vec<i64>,
    pub attachment: Option<AttachmentRec>,
    pub sms_msg_id: Option<i64>,
    #[serde(default, deserialize_with = "flag")]
    pub is_custom_reminder_response: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SenderRef {
    pub kind: SenderKind,
    pub id: Option<i64>,
}

impl Serialize for SenderRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("type", self.kind.as_str())?;
        map.serialize_entry("id", &self.id)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for SenderRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(rename = "type")]
            kind: String,
            id: Option<i64>,
        }
        let raw = Raw::deserialize(d)?;
        let kind = SenderKind::parse(&raw.kind).ok_or_else(|| {
            de::Error::custom(format!(
                "sender type `{}` is not Patient, User or System",
                raw.kind
            ))
        })?;
        match (kind, raw.id) {
            (SenderKind::System, Some(_)) => Err(de::Error::custom("a System sender has id null")),
            (SenderKind::Patient | SenderKind::User, None) => Err(de::Error::custom(format!(
                "a {} sender needs an id",
                kind.as_str()
            ))),
            _ => Ok(SenderRef { kind, id: raw.id }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRec {
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub file_size: Option<i64>,
    pub url: Option<String>,
    pub updated_at: Option<Ts>,
}

/// `null` or absent means false.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

/// The bio object, kept as compact text so its keys keep their order; `null` means `{}`.
fn bio<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = Option::<&RawValue>::deserialize(d)?;
    match raw {
        None => Ok(None),
        Some(r) if r.get() == "null" => Ok(None),
        Some(r) if r.get().starts_with('{') => Ok(Some(compact_json(r.get()))),
        Some(_) => Err(de::Error::custom("bio must be a JSON object")),
    }
}

fn bio_out<S: Serializer>(bio: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    let text = bio.as_deref().unwrap_or("{}");
    let raw = RawValue::from_string(text.to_owned()).map_err(serde::ser::Error::custom)?;
    raw.serialize(s)
}

/// The ids of a stored `seen_by` (a JSON array of id strings), for an export.
pub fn seen_by_ids(stored: &str) -> Vec<i64> {
    serde_json::from_str::<Vec<String>>(stored)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| crate::params::parse_int(s))
        .collect()
}

/// As the API shows them: strings.
fn seen_by_out<S: Serializer>(ids: &[i64], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(|id| id.to_string()))
}

/// Staff user ids, written as strings (as the API shows them) or integers.
fn seen_by<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    let values = Option::<Vec<serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    values
        .iter()
        .map(|v| match v {
            serde_json::Value::String(s) => crate::params::parse_int(s),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        })
        .map(|id| id.ok_or_else(|| de::Error::custom("seen_by must hold user ids")))
        .collect()
}

/// Drops the insignificant whitespace of valid JSON text, leaving strings and key order intact.
pub fn compact_json(valid: &str) -> String {
    let mut out = String::with_capacity(valid.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in valid.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !c.is_ascii_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = Record;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object whose first key is \"type\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let first: Option<&str> = map.next_key()?;
        if first != Some("type") {
            return Err(de::Error::custom("the first key must be \"type\""));
        }
        let kind: &str = map.next_value()?;
        let rest = de::value::MapAccessDeserializer::new(map);
        Ok(match kind {
            "institution" => Record::Institution(Deserialize::deserialize(rest)?),
            "location" => Record::Location(Deserialize::deserialize(rest)?),
            "patient" => Record::Patient(Deserialize::deserialize(rest)?),
            "user" => Record::User(Deserialize::deserialize(rest)?),
            "conversation" => Record::Conversation(Deserialize::deserialize(rest)?),
            "message" => Record::Message(Deserialize::deserialize(rest)?),
            other => return Err(de::Error::custom(format!("unknown record type `{other}`"))),
        })
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RecordVisitor)
    }
}

impl Record {
    /// Parses one non-blank line; the error is a reason without position noise.
    pub fn parse_line(line: &str) -> Result<Record, String> {
        serde_json::from_str(line).map_err(|e| {
            let text = e.to_string();
            // serde_json appends " at line 1 column N"; the caller names the file's line.
            match text.rfind(" at line ") {
                Some(i) => format!("{} (column {})", &text[..i], e.column()),
                None => text,
            }
        })
    }
}
