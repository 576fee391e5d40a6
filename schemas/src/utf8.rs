//! UTF-8 checks of untrusted bytes (Hubble JSON lines, protobuf strings), with SIMD: the
//! standard library's check was a sixth of decoding a live flow (`hubble-stages`). The
//! position of the first bad byte, for the error, comes from the standard check, on the rare
//! input that fails.

/// Shorter than this, simdutf8 hands the check to the standard library, whose general path
/// costs more than asking whether every byte is ASCII (most of a flow's strings are short
/// ASCII names and labels).
const SHORT: usize = 64;

/// `bytes` as text, or the length of their valid prefix.
#[inline(always)]
pub(crate) fn str(bytes: &[u8]) -> Result<&str, usize> {
    if bytes.len() < SHORT && bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    long_or_not_ascii(bytes)
}

/// [`str`] for long text or text that is not ASCII: out of line, so that the short ASCII case
/// inlines into the decoders small.
#[inline(never)]
fn long_or_not_ascii(bytes: &[u8]) -> Result<&str, usize> {
    simdutf8::basic::from_utf8(bytes)
        .map_err(|_| std::str::from_utf8(bytes).map_or_else(|e| e.valid_up_to(), str::len))
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_passes_and_a_bad_byte_is_located() {
        assert_eq!(super::str("flow → ok".as_bytes()), Ok("flow → ok"));
        assert_eq!(super::str(b"abc\xffdef"), Err(3));
        assert_eq!(super::str(b"\xe2\x86"), Err(0), "a truncated sequence");
        let long = "x".repeat(100);
        assert_eq!(super::str(long.as_bytes()), Ok(long.as_str()));
        assert_eq!(
            super::str(format!("{long}\u{e9}").as_bytes())
                .unwrap()
                .len(),
            102
        );
        assert_eq!(
            super::str(&[b'a', 0x80]),
            Err(1),
            "short, not ASCII, not UTF-8"
        );
    }
}
