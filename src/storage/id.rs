//! Server-made file ids: UUID v7, so ids sort by creation time and the listing needs no extra index.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(Uuid);

impl FileId {
    pub fn new() -> Self {
        FileId(Uuid::now_v7())
    }

    /// The 16 bytes, in the order that sorts ids by creation time.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Back from [`FileId::as_bytes`]; `None` unless there are 16 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<FileId> {
        Uuid::from_slice(bytes).ok().map(FileId)
    }
}

impl Default for FileId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

/// The id is not one ferry could have made.
#[derive(Debug, PartialEq, Eq)]
pub struct MalformedId;

impl FromStr for FileId {
    type Err = MalformedId;

    /// Accepts only the canonical lowercase hyphenated form that ferry hands out, so that every id maps to
    /// exactly one file name and nothing else (braces, URNs, upper case) ever reaches the file system.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let uuid = Uuid::try_parse(s).map_err(|_| MalformedId)?;
        let canonical = uuid.as_hyphenated().encode_lower(&mut Uuid::encode_buffer()) == s;
        if canonical { Ok(FileId(uuid)) } else { Err(MalformedId) }
    }
}

impl Serialize for FileId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FileId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(|_| serde::de::Error::custom("not a ferry file id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_form_parses() {
        let id = FileId::new();
        let text = id.to_string();
        assert_eq!(text.parse::<FileId>(), Ok(id));
        assert!(text.to_uppercase().parse::<FileId>().is_err());
        assert!(format!("{{{text}}}").parse::<FileId>().is_err());
        assert!(text.replace('-', "").parse::<FileId>().is_err());
        assert!("../../etc/passwd".parse::<FileId>().is_err());
        assert!("".parse::<FileId>().is_err());
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let ids: Vec<FileId> = (0..100).map(|_| FileId::new()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
