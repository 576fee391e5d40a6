//! A pull reader of the protobuf wire format, for [`super::protobuf`]: fields one by one,
//! straight from the received bytes, nothing allocated.
//!
//! It knows the encoding and nothing of Hubble: tags, varints, fixed-width numbers and
//! length-delimited values, and where each ends. Every read is bounds-checked: bytes from a
//! server are untrusted, and a truncated or malformed message is an error naming what broke
//! (the caller adds the field path), never a panic.

use std::fmt;

/// What went wrong, with the path of the field at fault once the callers have added it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    path: Vec<&'static str>,
    reason: String,
}

impl WireError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        WireError {
            path: Vec::new(),
            reason: reason.into(),
        }
    }

    /// The same error, inside field `name` (added from the innermost field outwards).
    pub(crate) fn within(mut self, name: &'static str) -> Self {
        self.path.push(name);
        self
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            return write!(f, "{}", self.reason);
        }
        let path: Vec<&str> = self.path.iter().rev().copied().collect();
        write!(f, "at {}: {}", path.join("."), self.reason)
    }
}

impl std::error::Error for WireError {}

pub(crate) type Result<T> = std::result::Result<T, WireError>;

/// One field's value as the wire carries it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Varint(u64),
    /// A `fixed32`/`fixed64`/`float`/`double`: flow.proto has none, so only skipped.
    Fixed,
    /// A string, bytes, an embedded message or a packed repeated field.
    Bytes(&'a [u8]),
}

impl<'a> Value<'a> {
    /// A `uint32`, `int32`, `uint64`, `bool` or enum: a varint.
    pub fn varint(self) -> Result<u64> {
        match self {
            Value::Varint(v) => Ok(v),
            _ => Err(WireError::new("expected a varint")),
        }
    }

    /// A `uint32` (a larger varint is refused, as protobuf decoders do).
    pub fn u32(self) -> Result<u32> {
        u32::try_from(self.varint()?).map_err(|_| WireError::new("a uint32 out of range"))
    }

    /// An `int32` or an enum: the low 32 bits, sign included (negative values are sent as
    /// 10-byte varints).
    pub fn i32(self) -> Result<i32> {
        Ok(self.varint()? as i32)
    }

    pub fn bool(self) -> Result<bool> {
        Ok(self.varint()? != 0)
    }

    /// An `int64` (a Timestamp's seconds).
    pub fn i64(self) -> Result<i64> {
        Ok(self.varint()? as i64)
    }

    #[inline(always)]
    pub fn bytes(self) -> Result<&'a [u8]> {
        match self {
            Value::Bytes(bytes) => Ok(bytes),
            _ => Err(not_length_delimited()),
        }
    }

    /// A `string`: protobuf requires UTF-8, and so do the columns. Inlined, like
    /// [`Message::next`], so that the text does not come back through memory.
    #[inline(always)]
    pub fn str(self) -> Result<&'a str> {
        crate::utf8::str(self.bytes()?).map_err(not_utf8)
    }

    /// An embedded message.
    pub fn message(self) -> Result<Message<'a>> {
        Ok(Message::new(self.bytes()?))
    }
}

/// The fields of one message, in wire order.
#[derive(Debug, Clone)]
pub(crate) struct Message<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Message<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Message { bytes, at: 0 }
    }

    /// The next field's number and value; `None` at the end of the message.
    ///
    /// Inlined into every message's field loop: called out of line, its result went back
    /// through memory, and the caller's 16-byte load of the two words just stored stalled on
    /// store forwarding (perf: ~60% of the samples of `strings` and `endpoint`). Its errors are
    /// built out of line.
    #[allow(clippy::should_implement_trait)] // fallible: not an Iterator
    #[inline(always)]
    pub fn next(&mut self) -> Result<Option<(u32, Value<'a>)>> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let field = match u32::try_from(tag >> 3) {
            Ok(field) if field != 0 => field,
            _ => return Err(invalid_tag(tag)),
        };
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.take(usize::try_from(len).unwrap_or(usize::MAX))?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            // 3 and 4 are proto2 groups, which flow.proto does not use; 6 and 7 do not exist.
            kind => return Err(unknown_wire_type(field, kind)),
        };
        Ok(Some((field, value)))
    }

    /// Whether the next field is number `field` (without reading it): runs of a repeated field
    /// are read together.
    pub fn next_is(&self, field: u32) -> bool {
        let mut peek = self.clone();
        matches!(peek.varint(), Ok(tag) if tag >> 3 == u64::from(field))
    }

    #[inline(always)]
    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let left = self.bytes.len() - self.at;
        if len > left {
            return Err(truncated(len, left));
        }
        let taken = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(taken)
    }

    #[inline]
    fn varint(&mut self) -> Result<u64> {
        // Most varints on this wire are one byte (tags, lengths of short strings, enums).
        if let Some(&byte) = self.bytes.get(self.at) {
            if byte & 0x80 == 0 {
                self.at += 1;
                return Ok(u64::from(byte));
            }
        }
        self.varint_slow()
    }

    fn varint_slow(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err(WireError::new("truncated in a varint"));
            };
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::new("a varint longer than 10 bytes"))
    }
}

#[cold]
fn not_length_delimited() -> WireError {
    WireError::new("expected a length-delimited value")
}

#[cold]
fn not_utf8(valid_up_to: usize) -> WireError {
    WireError::new(format!(
        "a string that is not UTF-8 (at byte {valid_up_to})"
    ))
}

#[cold]
fn invalid_tag(tag: u64) -> WireError {
    WireError::new(format!("an invalid tag {tag}"))
}

#[cold]
fn unknown_wire_type(field: u32, kind: u64) -> WireError {
    WireError::new(format!(
        "field {field} has wire type {kind}, which this API never sends"
    ))
}

#[cold]
fn truncated(len: usize, left: usize) -> WireError {
    WireError::new(format!("truncated: {len} bytes announced, {left} left"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_every_wire_type_are_read_and_bad_bytes_are_errors() {
        // field 1 varint 300, field 2 "hi", field 3 fixed32 7, field 4 fixed64 9, field 5 -1
        let mut bytes = vec![
            0x08, 0xac, 0x02, 0x12, 2, b'h', b'i', 0x1d, 7, 0, 0, 0, 0x21,
        ];
        bytes.extend_from_slice(&9u64.to_le_bytes());
        bytes.extend_from_slice(&[
            0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1,
        ]);
        let mut message = Message::new(&bytes);
        assert!(message.next_is(1));
        let (field, value) = message.next().unwrap().unwrap();
        assert_eq!((field, value.u32().unwrap()), (1, 300));
        assert!(message.next_is(2) && !message.next_is(1));
        let (field, value) = message.next().unwrap().unwrap();
        assert_eq!((field, value.str().unwrap()), (2, "hi"));
        assert!(matches!(message.next().unwrap(), Some((3, Value::Fixed))));
        assert!(matches!(message.next().unwrap(), Some((4, Value::Fixed))));
        let (field, value) = message.next().unwrap().unwrap();
        assert_eq!((field, value.i32().unwrap()), (5, -1));
        assert!(value.u32().is_err(), "-1 is not a uint32");
        assert!(message.next().unwrap().is_none());

        let error = |bytes: &[u8]| {
            let mut message = Message::new(bytes);
            loop {
                match message.next() {
                    Ok(Some(_)) => {}
                    Ok(None) => return None,
                    Err(error) => return Some(error.to_string()),
                }
            }
        };
        assert!(error(&[0x12, 5, b'a']).unwrap().contains("truncated"));
        assert!(error(&[0x08, 0x80]).unwrap().contains("varint"));
        assert!(error(&[0x0b]).unwrap().contains("wire type 3"));
        assert!(error(&[0x00, 0x01]).unwrap().contains("invalid tag"));
        assert!(
            error(&[0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_some()
        );
        let invalid = [0x12, 1, 0xff];
        let mut message = Message::new(&invalid);
        let (_, value) = message.next().unwrap().unwrap();
        let text = value
            .str()
            .unwrap_err()
            .within("IP")
            .within("flow")
            .to_string();
        assert_eq!(text, "at flow.IP: a string that is not UTF-8 (at byte 0)");
    }
}
