//! A pull parser over one JSON line, made for protojson.
//!
//! The decoder asks for what the proto says comes next (an object, a string, a 64-bit integer
//! that protojson writes as a string, ...) and the parser checks the bytes are exactly that,
//! borrowing strings from the line whenever they hold no escape. Values the decoder does not
//! know (fields from a newer Cilium) are skipped but still checked to be valid JSON.
//!
//! An error names where it happened as a path of keys (`flow.l4.TCP.source_port`), built only
//! on the way out, so the happy path pays nothing for it.
//!
//! The line is bytes, checked as UTF-8 where text can be: in strings, whose scan for their end
//! also sees whether every byte is ASCII (then there is nothing more to check); everywhere else
//! only JSON's ASCII tokens are accepted. Checking each line whole before parsing it was ~4% of
//! an import's CPU.

use std::borrow::Cow;
use std::fmt;

/// Deepest nesting accepted in a value the decoder skips: bounds recursion on hostile input.
const MAX_DEPTH: usize = 64;

/// Why a line could not be decoded, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    /// Keys from the outermost object inwards.
    path: Vec<String>,
    message: String,
}

impl JsonError {
    pub fn new(message: impl Into<String>) -> Self {
        JsonError {
            path: Vec::new(),
            message: message.into(),
        }
    }

    fn within(mut self, key: &str) -> Self {
        self.path.insert(0, key.to_string());
        self
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path.join("."), self.message)
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, JsonError>;

/// Position in one line of JSON (bytes, not yet known to be UTF-8).
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(json: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        Cursor {
            bytes: json.as_ref(),
            at: 0,
        }
    }

    /// The bytes `from..to` as text, or where they stop being UTF-8.
    fn utf8(&self, from: usize, to: usize) -> Result<&'a str> {
        crate::utf8::str(&self.bytes[from..to]).map_err(|valid_up_to| {
            JsonError::new(format!(
                "invalid UTF-8 at column {}",
                from + valid_up_to + 1
            ))
        })
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next significant byte, not consumed. protojson writes no whitespace, so the byte at
    /// the cursor is checked first.
    #[inline]
    fn peek(&mut self) -> Result<u8> {
        match self.bytes.get(self.at) {
            Some(&byte) if !matches!(byte, b' ' | b'\t' | b'\r' | b'\n') => Ok(byte),
            _ => self.peek_after_whitespace(),
        }
    }

    #[cold]
    fn peek_after_whitespace(&mut self) -> Result<u8> {
        self.skip_whitespace();
        self.bytes
            .get(self.at)
            .copied()
            .ok_or_else(|| JsonError::new("truncated JSON: the line ends inside a value"))
    }

    #[inline]
    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            return Ok(());
        }
        self.expect_after_whitespace(byte)
    }

    #[cold]
    fn expect_after_whitespace(&mut self, byte: u8) -> Result<()> {
        let found = self.peek()?;
        if found != byte {
            return Err(self.unexpected(found, &format!("'{}'", byte as char)));
        }
        self.at += 1;
        Ok(())
    }

    fn unexpected(&self, found: u8, wanted: &str) -> JsonError {
        let found = match found {
            b'"' => "a string".to_string(),
            b'{' => "an object".to_string(),
            b'[' => "an array".to_string(),
            b'-' | b'0'..=b'9' => "a number".to_string(),
            b't' | b'f' => "a boolean".to_string(),
            other if other.is_ascii_graphic() => format!("'{}'", other as char),
            other => format!("byte 0x{other:02x}"),
        };
        JsonError::new(format!(
            "expected {wanted}, found {found} at column {}",
            self.at + 1
        ))
    }

    fn literal(&mut self, word: &str) -> Result<()> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(())
        } else {
            Err(JsonError::new(format!(
                "invalid literal at column {} (expected {word})",
                self.at + 1
            )))
        }
    }

    /// Consumes a `null` if one comes next. protojson never writes null, but other writers do,
    /// and it means the same as an absent field.
    pub fn null(&mut self) -> Result<bool> {
        if self.peek()? == b'n' {
            self.literal("null")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Fails unless only whitespace is left.
    pub fn finish(&mut self) -> Result<()> {
        self.skip_whitespace();
        match self.bytes.get(self.at) {
            None => Ok(()),
            Some(_) => Err(JsonError::new(format!(
                "unexpected text after the JSON value at column {}",
                self.at + 1
            ))),
        }
    }

    /// Calls `field` with each key of an object, the cursor on its value; `field` must consume
    /// the value. Returns false for `null`.
    pub fn object(&mut self, mut field: impl FnMut(&mut Self, &str) -> Result<()>) -> Result<bool> {
        if self.null()? {
            return Ok(false);
        }
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Ok(true);
        }
        loop {
            if self.peek()? != b'"' {
                return Err(self.unexpected(self.bytes[self.at], "a key"));
            }
            let key = self.string_body()?;
            self.expect(b':')?;
            field(self, &key).map_err(|e| e.within(&key))?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Ok(true);
                }
                other => return Err(self.unexpected(other, "',' or '}'")),
            }
        }
    }

    /// Calls `item` with the cursor on each element of an array. Returns false for `null`.
    pub fn array(&mut self, mut item: impl FnMut(&mut Self) -> Result<()>) -> Result<bool> {
        if self.null()? {
            return Ok(false);
        }
        self.expect(b'[')?;
        if self.peek()? == b']' {
            self.at += 1;
            return Ok(true);
        }
        let mut index = 0usize;
        loop {
            item(self).map_err(|e| e.within(&format!("[{index}]")))?;
            index += 1;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Ok(true);
                }
                other => return Err(self.unexpected(other, "',' or ']'")),
            }
        }
    }

    /// A string; also accepts a number and returns its text (protojson readers accept enum
    /// numbers where names are expected). `None` for `null`.
    pub fn text(&mut self) -> Result<Option<Cow<'a, str>>> {
        match self.peek()? {
            b'"' => self.string_body().map(Some),
            b'-' | b'0'..=b'9' => Ok(Some(Cow::Borrowed(self.number_text()))),
            b'n' => self.null().map(|_| None),
            other => Err(self.unexpected(other, "a string")),
        }
    }

    /// The string starting at the cursor (on its opening quote).
    ///
    /// Inlined for its common case, an ASCII string without escapes, which every key and most
    /// values are: called out of line, its result went back through memory, and the caller's
    /// 16-byte load of the two 8-byte words just stored could not be forwarded from the store
    /// buffer (perf put ~85% of `text`'s samples on that stall, ~8% of an import's).
    #[inline(always)]
    fn string_body(&mut self) -> Result<Cow<'a, str>> {
        self.at += 1; // the opening quote
        let start = self.at;
        match find_quote_or_backslash(&self.bytes[start..]) {
            Some(End {
                offset,
                ascii: true,
            }) if self.bytes[start + offset] == b'"' => {
                self.at = start + offset + 1;
                // SAFETY: the scan saw every byte of the body below 0x80: ASCII is UTF-8.
                let text =
                    unsafe { std::str::from_utf8_unchecked(&self.bytes[start..start + offset]) };
                Ok(Cow::Borrowed(text))
            }
            end => self.other_string_body(start, end),
        }
    }

    /// The rest of [`Cursor::string_body`]: text that is not ASCII, escapes, a missing end.
    #[inline(never)]
    fn other_string_body(&mut self, start: usize, end: Option<End>) -> Result<Cow<'a, str>> {
        match end {
            Some(End { offset, .. }) if self.bytes[start + offset] == b'"' => {
                self.at = start + offset + 1;
                self.utf8(start, start + offset).map(Cow::Borrowed)
            }
            Some(End { offset, .. }) => self.escaped_string(start, start + offset).map(Cow::Owned),
            None => Err(JsonError::new("truncated JSON: unterminated string")),
        }
    }

    /// Slow path: a string with escapes. `start` is after the quote, `escape` the first `\`.
    fn escaped_string(&mut self, start: usize, mut escape: usize) -> Result<String> {
        let mut out = String::with_capacity(escape - start + 16);
        let mut from = start;
        loop {
            out.push_str(self.utf8(from, escape)?);
            let code = *self
                .bytes
                .get(escape + 1)
                .ok_or_else(|| JsonError::new("truncated JSON: unterminated string"))?;
            let mut next = escape + 2;
            match code {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let (c, after) = self.unicode_escape(escape)?;
                    out.push(c);
                    next = after;
                }
                other => {
                    return Err(JsonError::new(format!(
                        "invalid escape '\\{}' in a string at column {}",
                        other as char,
                        escape + 1
                    )))
                }
            }
            from = next;
            match memchr::memchr2(b'"', b'\\', &self.bytes[from..]) {
                Some(offset) if self.bytes[from + offset] == b'"' => {
                    out.push_str(self.utf8(from, from + offset)?);
                    self.at = from + offset + 1;
                    return Ok(out);
                }
                Some(offset) => escape = from + offset,
                None => return Err(JsonError::new("truncated JSON: unterminated string")),
            }
        }
    }

    /// `\uXXXX` at `escape` (the backslash), with a following low surrogate if it is a high one.
    fn unicode_escape(&self, escape: usize) -> Result<(char, usize)> {
        let invalid = || {
            JsonError::new(format!(
                "invalid \\u escape in a string at column {}",
                escape + 1
            ))
        };
        let hex = |at: usize| -> Result<u32> {
            let digits = self.bytes.get(at..at + 4).ok_or_else(invalid)?;
            let digits = std::str::from_utf8(digits).map_err(|_| invalid())?;
            u32::from_str_radix(digits, 16).map_err(|_| invalid())
        };
        let first = hex(escape + 2)?;
        if (0xD800..0xDC00).contains(&first) {
            if self.bytes.get(escape + 6..escape + 8) != Some(b"\\u") {
                return Err(invalid());
            }
            let second = hex(escape + 8)?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(invalid());
            }
            let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
            return Ok((char::from_u32(code).ok_or_else(invalid)?, escape + 12));
        }
        Ok((char::from_u32(first).ok_or_else(invalid)?, escape + 6))
    }

    /// The text of a JSON number at the cursor (checked later by whoever parses it).
    fn number_text(&mut self) -> &'a str {
        let start = self.at;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.bytes.get(self.at) {
            self.at += 1;
        }
        // SAFETY: the loop took only ASCII bytes.
        unsafe { std::str::from_utf8_unchecked(&self.bytes[start..self.at]) }
    }

    /// An integer written as a JSON number or, as protojson does for 64-bit types, a string.
    pub fn integer<T: std::str::FromStr>(&mut self, kind: &str) -> Result<Option<T>> {
        let text = match self.peek()? {
            b'"' => self.string_body()?,
            b'-' | b'0'..=b'9' => Cow::Borrowed(self.number_text()),
            b'n' => {
                self.null()?;
                return Ok(None);
            }
            other => return Err(self.unexpected(other, kind)),
        };
        text.parse::<T>()
            .map(Some)
            .map_err(|_| JsonError::new(format!("expected {kind}, found \"{text}\"")))
    }

    pub fn boolean(&mut self) -> Result<Option<bool>> {
        match self.peek()? {
            b't' => self.literal("true").map(|_| Some(true)),
            b'f' => self.literal("false").map(|_| Some(false)),
            b'n' => self.null().map(|_| None),
            other => Err(self.unexpected(other, "a boolean")),
        }
    }

    /// Skips any value, checking that it is well-formed JSON.
    pub fn skip(&mut self) -> Result<()> {
        self.skip_nested(0)
    }

    fn skip_nested(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(JsonError::new(format!(
                "value nested deeper than {MAX_DEPTH} levels"
            )));
        }
        match self.peek()? {
            b'{' => self
                .object(|cursor, _| cursor.skip_nested(depth + 1))
                .map(drop),
            b'[' => self.array(|cursor| cursor.skip_nested(depth + 1)).map(drop),
            b'"' => self.string_body().map(drop),
            b'-' | b'0'..=b'9' => {
                let text = self.number_text();
                text.parse::<f64>()
                    .map(drop)
                    .map_err(|_| JsonError::new(format!("invalid number \"{text}\"")))
            }
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            other => Err(self.unexpected(other, "a value")),
        }
    }
}

/// Where a string's body ends: the offset of the first `"` or `\\`, and whether every byte
/// before it is ASCII.
#[derive(Debug, PartialEq, Eq)]
struct End {
    offset: usize,
    ascii: bool,
}

/// Finds the [`End`] of a string's body. Most protojson strings (keys, names, addresses) are a
/// few words long: sixteen bytes at a time with SSE2 (every x86-64 has it) find their end in
/// one or two steps, sooner than `memchr2` sets up its vector loop (measured: ~3% of an
/// import's CPU) or than eight bytes at a time with integer arithmetic (elsewhere).
#[inline(always)]
fn find_quote_or_backslash(bytes: &[u8]) -> Option<End> {
    let mut at = 0;
    let mut ascii = true;
    while let Some(chunk) = bytes.get(at..at + STEP) {
        let (found, high) = first_quote_or_backslash(chunk);
        ascii &= !high;
        if let Some(offset) = found {
            return Some(End {
                offset: at + offset,
                ascii,
            });
        }
        at += STEP;
        if at >= 64 {
            // A long string: let memchr's vectors take over.
            let offset = at + memchr::memchr2(b'"', b'\\', &bytes[at..])?;
            return Some(End {
                offset,
                ascii: ascii && bytes[at..offset].is_ascii(),
            });
        }
    }
    let offset = at + bytes[at..].iter().position(|&b| b == b'"' || b == b'\\')?;
    Some(End {
        offset,
        ascii: ascii && bytes[at..offset].is_ascii(),
    })
}

#[cfg(target_arch = "x86_64")]
const STEP: usize = 16;

/// The first `"` or `\\` in `chunk` ([`STEP`] bytes), and whether a byte before it (in all
/// the chunk when there is none) is not ASCII.
#[cfg(target_arch = "x86_64")]
#[inline]
fn first_quote_or_backslash(chunk: &[u8]) -> (Option<usize>, bool) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    assert_eq!(chunk.len(), STEP);
    // SAFETY: SSE2 is part of x86-64; the load is unaligned and reads the chunk's 16 bytes.
    let (found, high) = unsafe {
        let word = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let quotes = _mm_cmpeq_epi8(word, _mm_set1_epi8(b'"' as i8));
        let backslashes = _mm_cmpeq_epi8(word, _mm_set1_epi8(b'\\' as i8));
        // Bit i: byte i ends the string; bit i of `high`: byte i has its top bit set.
        (
            _mm_movemask_epi8(_mm_or_si128(quotes, backslashes)) as u32,
            _mm_movemask_epi8(word) as u32,
        )
    };
    if found == 0 {
        return (None, high != 0);
    }
    let offset = found.trailing_zeros();
    (Some(offset as usize), high & ((1 << offset) - 1) != 0)
}

#[cfg(not(target_arch = "x86_64"))]
const STEP: usize = 8;

/// The first `"` or `\\` in `chunk` ([`STEP`] bytes), eight at a time in a word, and whether a
/// byte before it (in all the chunk when there is none) is not ASCII.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn first_quote_or_backslash(chunk: &[u8]) -> (Option<usize>, bool) {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    /// High bit set in each byte of `word` that is zero (exact for the lowest such byte).
    fn zero_bytes(word: u64) -> u64 {
        word.wrapping_sub(ONES) & !word & HIGHS
    }
    let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
    let found =
        zero_bytes(word ^ (ONES * u64::from(b'"'))) | zero_bytes(word ^ (ONES * u64::from(b'\\')));
    let high = word & HIGHS;
    if found == 0 {
        return (None, high != 0);
    }
    let offset = found.trailing_zeros() / 8;
    (
        Some(offset as usize),
        high & ((1u64 << (offset * 8)) - 1) != 0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(json: &str) -> Result<Option<String>> {
        let mut cursor = Cursor::new(json);
        let value = cursor.text()?.map(|c| c.into_owned());
        cursor.finish()?;
        Ok(value)
    }

    #[test]
    fn strings_with_and_without_escapes() {
        assert_eq!(parse_text(r#""plain""#).unwrap().as_deref(), Some("plain"));
        assert_eq!(
            parse_text(r#""a\"b\\c\/d\n\u00e9\ud83d\ude00""#)
                .unwrap()
                .as_deref(),
            Some("a\"b\\c/d\né😀")
        );
        // Text that is not ASCII, with and without an escape, and past the 16-byte steps.
        for (json, text) in [
            (r#""café""#, "café"),
            (
                r#""ünïcödé label values longer than one step""#,
                "ünïcödé label values longer than one step",
            ),
            (r#""é\tü""#, "é\tü"),
        ] {
            assert_eq!(parse_text(json).unwrap().as_deref(), Some(text), "{json}");
        }
        assert_eq!(parse_text("42").unwrap().as_deref(), Some("42"));
        assert_eq!(parse_text("null").unwrap(), None);
        assert!(parse_text(r#""open"#).is_err());
        assert!(parse_text(r#""bad \x escape""#).is_err());
        assert!(parse_text(r#""\ud83d alone""#).is_err());
        assert!(parse_text(r#""x" trailing"#).is_err());
    }

    #[test]
    fn finds_the_first_quote_or_backslash_at_any_offset() {
        for len in 0..150 {
            for (at, byte) in [(len, b'"'), (len, b'\\')] {
                let mut text = vec![b'a'; len + 20];
                // Bytes that differ from the targets by one bit, to catch a sloppy mask.
                for (i, b) in text.iter_mut().enumerate() {
                    *b = [b'a', b'#', b'!', 0xa2, b']', b'\x5d'][i % 6];
                }
                text[at] = byte;
                text[at + 3] = b'"';
                let ascii = text[..at].is_ascii();
                let end = Some(End { offset: at, ascii });
                assert_eq!(find_quote_or_backslash(&text), end, "len {len}");
                // A byte with its top bit set counts before the end, anywhere, and not after it.
                let mut plain = vec![b'a'; len + 20];
                plain[at] = byte;
                plain[at + 1] = 0xc3;
                let end = Some(End {
                    offset: at,
                    ascii: true,
                });
                assert_eq!(find_quote_or_backslash(&plain), end, "len {len}");
                for high in [0, len / 2, len.saturating_sub(1)] {
                    if high < at {
                        let mut one = plain.clone();
                        one[high] = 0xc3;
                        let end = Some(End {
                            offset: at,
                            ascii: false,
                        });
                        assert_eq!(find_quote_or_backslash(&one), end, "len {len}, at {high}");
                    }
                }
            }
            let none = vec![b'x'; len];
            assert_eq!(find_quote_or_backslash(&none), None);
        }
    }

    #[test]
    fn integers_as_numbers_or_strings() {
        let int = |json: &str| Cursor::new(json).integer::<u64>("an unsigned integer");
        assert_eq!(int("7").unwrap(), Some(7));
        assert_eq!(int(r#""18446744073709551615""#).unwrap(), Some(u64::MAX));
        assert_eq!(int("null").unwrap(), None);
        assert!(int("-1").is_err());
        assert!(int("1.5").is_err());
        assert!(int("true").is_err());
        assert!(Cursor::new("4294967296")
            .integer::<u32>("an unsigned 32-bit integer")
            .is_err());
    }

    #[test]
    fn errors_name_the_path() {
        let mut cursor = Cursor::new(r#"{"a":{"b":[1,{"c":x}]}}"#);
        let error = cursor.skip().unwrap_err();
        assert_eq!(error.path, vec!["a", "b", "[1]", "c"]);
        assert!(error.to_string().starts_with("a.b.[1].c: "), "{error}");
    }

    #[test]
    fn skipping_checks_structure_and_bounds_depth() {
        for good in [
            r#"{"a":[1,-2.5e3,"x",true,false,null,{}],"b":{}}"#,
            "[]",
            "\"s\"",
        ] {
            let mut cursor = Cursor::new(good);
            cursor.skip().unwrap();
            cursor.finish().unwrap();
        }
        for bad in [
            r#"{"a" 1}"#,
            r#"{"a":1,}"#,
            "[1 2]",
            "tru",
            "{",
            "[",
            r#"{"a":1"#,
            "--1",
        ] {
            assert!(Cursor::new(bad).skip().is_err(), "{bad}");
        }
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(Cursor::new(&deep).skip().is_err());
    }
}
