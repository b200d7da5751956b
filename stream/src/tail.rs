//! The tail of a stream, after the RAM END section: the device state (FULL sections), the
//! EOF marker and the VMDESCRIPTION JSON.
//!
//! Device sections carry no length; QEMU's VMDESCRIPTION lists, per device, the bytes each
//! field took and the subsections sent, which is enough to walk them (as QEMU's
//! `scripts/analyze-migration.py` does). [`DeviceState::parse`] walks the whole tail that
//! way and checks every section header, subsection name and footer.
//!
//! The work is linear in the tail's length: devices are looked up in an index built once,
//! and the fields visited are capped at the length of the tail (fields with a size of 0
//! take no bytes, so a crafted tail could otherwise repeat a section listing many of them
//! at little cost).

use core::fmt;
use std::collections::HashMap;

use serde_json::Value;

use crate::marker;

/// Deepest subsection nesting [`DeviceState::parse`] follows.
pub const MAX_NESTING: usize = 32;

/// One device section of the tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSection {
    /// Offset of its marker in the tail.
    pub offset: usize,
    /// Bytes of the section, header and footer included.
    pub len: usize,
    /// Section id.
    pub id: u32,
    /// Device id string.
    pub name: String,
    /// Instance id.
    pub instance: u32,
    /// Version id.
    pub version: u32,
}

/// The tail, walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// The device sections, in order.
    pub sections: Vec<DeviceSection>,
    /// Offset of the EOF marker in the tail.
    pub eof_offset: usize,
    /// Bytes of the VMDESCRIPTION JSON.
    pub vmdescription_len: usize,
    /// Devices the VMDESCRIPTION describes.
    pub described_devices: usize,
}

/// A tail that [`DeviceState::parse`] cannot walk: what, and at which offset of the tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailError {
    /// Offset in the tail.
    pub offset: usize,
    /// What was wrong.
    pub what: String,
}

impl fmt::Display for TailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "device state at tail byte {}: {}",
            self.offset, self.what
        )
    }
}

impl std::error::Error for TailError {}

impl DeviceState {
    /// Walks `tail` (everything after the RAM END section) with its VMDESCRIPTION; `footers`
    /// says whether sections end with a footer (as the RAM sections did).
    ///
    /// # Errors
    /// No VMDESCRIPTION at the end (QEMU omits it only for some machine types), invalid
    /// JSON, a section the JSON does not describe, sizes that run past the EOF marker, a
    /// bad subsection or footer, more fields to visit than the tail has bytes.
    pub fn parse(tail: &[u8], footers: bool) -> Result<Self, TailError> {
        let (eof_offset, json) = locate_vmdescription(tail).ok_or_else(|| TailError {
            offset: tail.len(),
            what: "no EOF marker followed by a VMDESCRIPTION at the end of the stream".into(),
        })?;
        let json_at = eof_offset + 6;
        let description: Value = serde_json::from_slice(json).map_err(|e| TailError {
            offset: json_at,
            what: format!("VMDESCRIPTION is not valid JSON: {e}"),
        })?;
        let devices = description
            .get("devices")
            .and_then(Value::as_array)
            .ok_or_else(|| TailError {
                offset: json_at,
                what: "VMDESCRIPTION has no `devices` list".into(),
            })?;
        // The first description of each (name, instance).
        let mut index: HashMap<(&str, u64), &Value> = HashMap::new();
        for device in devices {
            let name = device.get("name").and_then(Value::as_str);
            let instance = device.get("instance_id").and_then(Value::as_u64);
            if let (Some(name), Some(instance)) = (name, instance) {
                index.entry((name, instance)).or_insert(device);
            }
        }
        let mut walker = Walker {
            bytes: &tail[..eof_offset],
            at: 0,
            fields_visited: 0,
            field_limit: tail.len(),
        };
        let mut sections = Vec::new();
        while walker.at < eof_offset {
            let start = walker.at;
            if walker.u8()? != marker::SECTION_FULL {
                return Err(walker.error_at(start, "expected a FULL device section".into()));
            }
            let id = walker.be32()?;
            let name = walker.str8()?;
            let instance = walker.be32()?;
            let version = walker.be32()?;
            let device = index
                .get(&(name.as_str(), u64::from(instance)))
                .ok_or_else(|| {
                    walker.error_at(
                        start,
                        format!("device `{name}` instance {instance} is not in the VMDESCRIPTION"),
                    )
                })?;
            walker.skip_vmstate(device, &name, 0)?;
            if footers {
                let footer_at = walker.at;
                if walker.u8()? != marker::FOOTER || walker.be32()? != id {
                    return Err(walker.error_at(
                        footer_at,
                        format!("missing or wrong footer after device `{name}` (section {id})"),
                    ));
                }
            }
            sections.push(DeviceSection {
                offset: start,
                len: walker.at - start,
                id,
                name,
                instance,
                version,
            });
        }
        Ok(Self {
            sections,
            eof_offset,
            vmdescription_len: json.len(),
            described_devices: devices.len(),
        })
    }
}

/// Finds the EOF marker that is followed by a VMDESCRIPTION running to the end of `tail`:
/// `0x00`, `0x06`, be32 length, that many bytes of JSON. Returns the EOF marker's offset and
/// the JSON.
pub fn locate_vmdescription(tail: &[u8]) -> Option<(usize, &[u8])> {
    // The JSON is the last thing in the stream, so its length field says where it starts.
    (0..tail.len().saturating_sub(5)).rev().find_map(|p| {
        let len = u32::from_be_bytes(tail.get(p + 2..p + 6)?.try_into().ok()?) as usize;
        let fits = tail.len() - (p + 6) == len;
        (fits && tail[p] == marker::EOF && tail[p + 1] == marker::VMDESCRIPTION)
            .then(|| (p, &tail[p + 6..]))
    })
}

struct Walker<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Fields visited so far.
    fields_visited: usize,
    /// Most fields visited: the tail's length (QEMU's own tails visit far fewer, every
    /// device once: about 500 fields in 113 KB).
    field_limit: usize,
}

impl Walker<'_> {
    fn error_at(&self, offset: usize, what: String) -> TailError {
        TailError { offset, what }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], TailError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                self.error_at(
                    self.at,
                    format!(
                        "{n} bytes needed, only {} before the EOF marker",
                        self.bytes.len() - self.at
                    ),
                )
            })?;
        let bytes = &self.bytes[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, TailError> {
        Ok(self.take(1)?[0])
    }

    fn be32(&mut self) -> Result<u32, TailError> {
        let mut word = [0; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(word))
    }

    fn str8(&mut self) -> Result<String, TailError> {
        let len = usize::from(self.u8()?);
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    /// Skips one vmstate described by `description`: its fields' sizes, then the
    /// subsections it lists, each `0x05`, name, be32 version and its own vmstate.
    fn skip_vmstate(
        &mut self,
        description: &Value,
        path: &str,
        depth: usize,
    ) -> Result<(), TailError> {
        if depth > MAX_NESTING {
            return Err(self.error_at(self.at, format!("{path}: subsections nested too deep")));
        }
        let empty = Vec::new();
        let list = |key: &str| {
            description
                .get(key)
                .and_then(Value::as_array)
                .unwrap_or(&empty)
        };
        for field in list("fields") {
            if self.fields_visited == self.field_limit {
                return Err(self.error_at(
                    self.at,
                    format!(
                        "{path}: more than {} fields to visit, the tail's length in bytes \
                         (sections that repeat fields of size 0?)",
                        self.field_limit
                    ),
                ));
            }
            self.fields_visited += 1;
            let size = field.get("size").and_then(Value::as_u64).unwrap_or(0);
            let count = field.get("array_len").and_then(Value::as_u64).unwrap_or(1);
            let bytes = size
                .checked_mul(count)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| self.error_at(self.at, format!("{path}: field size overflows")))?;
            self.take(bytes)?;
        }
        for sub in list("subsections") {
            let start = self.at;
            let expected = sub.get("vmsd_name").and_then(Value::as_str).unwrap_or("");
            if self.u8()? != marker::SUBSECTION {
                return Err(
                    self.error_at(start, format!("{path}: expected subsection `{expected}`"))
                );
            }
            let name = self.str8()?;
            if name != expected {
                return Err(self.error_at(
                    start,
                    format!("{path}: subsection `{name}` where the VMDESCRIPTION has `{expected}`"),
                ));
            }
            self.be32()?;
            self.skip_vmstate(sub, &format!("{path}/{name}"), depth + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_with(sections: &[u8], json: &str) -> Vec<u8> {
        let mut tail = sections.to_vec();
        tail.push(marker::EOF);
        tail.push(marker::VMDESCRIPTION);
        tail.extend_from_slice(&(json.len() as u32).to_be_bytes());
        tail.extend_from_slice(json.as_bytes());
        tail
    }

    fn full_section(id: u32, name: &str, payload: &[u8], footer: bool) -> Vec<u8> {
        let mut s = vec![marker::SECTION_FULL];
        s.extend_from_slice(&id.to_be_bytes());
        s.push(name.len() as u8);
        s.extend_from_slice(name.as_bytes());
        s.extend_from_slice(&0u32.to_be_bytes());
        s.extend_from_slice(&1u32.to_be_bytes());
        s.extend_from_slice(payload);
        if footer {
            s.push(marker::FOOTER);
            s.extend_from_slice(&id.to_be_bytes());
        }
        s
    }

    const JSON: &str = r#"{"page_size":4096,"devices":[
        {"name":"timer","instance_id":0,"fields":[{"name":"a","size":8},{"name":"b","size":2,"array_len":3}],
         "subsections":[{"vmsd_name":"timer/x","fields":[{"name":"c","size":1}]}]},
        {"name":"cpu","instance_id":0,"fields":[{"name":"d","size":4}]}]}"#;

    fn good_sections(footer: bool) -> Vec<u8> {
        let mut timer = vec![7u8; 14];
        timer.push(marker::SUBSECTION);
        timer.push(7);
        timer.extend_from_slice(b"timer/x");
        timer.extend_from_slice(&1u32.to_be_bytes());
        timer.push(9);
        let mut sections = full_section(3, "timer", &timer, footer);
        sections.extend(full_section(4, "cpu", &[1, 2, 3, 4], footer));
        sections
    }

    #[test]
    fn walks_sections_with_the_json_sizes() {
        for footer in [true, false] {
            let sections = good_sections(footer);
            let tail = tail_with(&sections, JSON);
            let state = DeviceState::parse(&tail, footer).unwrap();
            assert_eq!(state.eof_offset, sections.len());
            assert_eq!(state.vmdescription_len, JSON.len());
            assert_eq!(state.described_devices, 2);
            let names: Vec<_> = state
                .sections
                .iter()
                .map(|s| (s.name.as_str(), s.id))
                .collect();
            assert_eq!(names, [("timer", 3), ("cpu", 4)]);
            assert_eq!(state.sections[1].offset, state.sections[0].len);
        }
    }

    #[test]
    fn rejects_what_does_not_walk() {
        let sections = good_sections(true);
        // Footers expected but absent.
        let no_footers = tail_with(&good_sections(false), JSON);
        assert!(DeviceState::parse(&no_footers, true).is_err());
        // A device the JSON does not describe.
        let other = tail_with(&full_section(5, "rtc", &[], true), JSON);
        let err = DeviceState::parse(&other, true).unwrap_err();
        assert!(err.what.contains("rtc"), "{err}");
        // Sizes that run past the EOF marker.
        let short = tail_with(&sections[..sections.len() - 6], JSON);
        assert!(DeviceState::parse(&short, true).is_err());
        // No VMDESCRIPTION, invalid JSON.
        assert!(DeviceState::parse(&sections, true).is_err());
        assert!(DeviceState::parse(&tail_with(&sections, "{nope"), true).is_err());
        // A wrong subsection name.
        let mut bad = sections.clone();
        let at = bad.windows(7).position(|w| w == b"timer/x").unwrap();
        bad[at + 6] = b'y';
        let err = DeviceState::parse(&tail_with(&bad, JSON), true).unwrap_err();
        assert!(err.what.contains("timer/y"), "{err}");
    }

    #[test]
    fn the_fields_visited_are_bounded_by_the_tail_length() {
        // A device of 2000 fields of size 0, in 3000 sections of 15 bytes: 6 million field
        // visits for a 90 KB tail without the limit.
        let fields = vec![r#"{"name":"f","size":0}"#; 2000].join(",");
        let json = format!(r#"{{"devices":[{{"name":"d","instance_id":0,"fields":[{fields}]}}]}}"#);
        let sections: Vec<u8> = (0..3000)
            .flat_map(|_| full_section(1, "d", &[], false))
            .collect();
        let tail = tail_with(&sections, &json);
        let err = DeviceState::parse(&tail, false).unwrap_err();
        assert!(
            err.what
                .contains(&format!("more than {} fields", tail.len())),
            "{err}"
        );
        // The walk stopped after `tail.len()` fields: in the fields of the section after the
        // `tail.len() / 2000` sections walked whole (just after its header).
        let section_len = sections.len() / 3000;
        assert_eq!(err.offset, (tail.len() / 2000 + 1) * section_len, "{err}");
        // The same device in fewer sections walks.
        let few: Vec<u8> = (0..10)
            .flat_map(|_| full_section(1, "d", &[], false))
            .collect();
        let state = DeviceState::parse(&tail_with(&few, &json), false).unwrap();
        assert_eq!(state.sections.len(), 10);
    }

    #[test]
    fn locates_the_description_only_at_the_end() {
        assert_eq!(locate_vmdescription(&[]), None);
        assert_eq!(
            locate_vmdescription(&[0, 6, 0, 0, 0, 0]),
            Some((0, &[][..]))
        );
        assert_eq!(locate_vmdescription(&[0, 6, 0, 0, 0, 1]), None);
        assert_eq!(
            locate_vmdescription(&[9, 0, 6, 0, 0, 0, 1, b'x']),
            Some((1, &b"x"[..]))
        );
    }
}
