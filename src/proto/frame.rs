//! Framing: splits a byte stream into length-prefixed frames and spots four-letter words.
//!
//! Owns the length-prefix rules (negative or over `max_frame` closes the connection). Never
//! decodes a frame's contents and never buffers more than one frame beyond what it was handed.

/// The four-letter words the server knows.
pub const FOUR_LETTER_WORDS: &[&str] = &[
    "ruok", "srvr", "stat", "mntr", "conf", "cons", "envi", "wchs", "wchc", "wchp", "isro", "dump", "dirs", "srst",
    "crst", "gtmk", "stmk", "hash",
];

/// If the first four bytes of a fresh connection spell a known command, returns it.
pub fn four_letter_word(first: &[u8]) -> Option<&'static str> {
    if first.len() < 4 {
        return None;
    }
    FOUR_LETTER_WORDS.iter().copied().find(|w| w.as_bytes() == &first[..4])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix is negative or larger than the maximum frame.
    BadLength(i64),
}

/// Looks for one complete frame at the start of `buf`. Returns the body range and the total
/// number of bytes it occupies, `Ok(None)` when more bytes are needed.
pub fn next_frame(buf: &[u8], max_frame: usize) -> Result<Option<(std::ops::Range<usize>, usize)>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 || len as usize > max_frame {
        return Err(FrameError::BadLength(len as i64));
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((4..total, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_words() {
        assert_eq!(four_letter_word(b"ruok"), Some("ruok"));
        assert_eq!(four_letter_word(&[0, 0, 0, 45]), None);
        assert_eq!(next_frame(&[0, 0, 0, 2, 9], 100), Ok(None));
        assert_eq!(next_frame(&[0, 0, 0, 2, 9, 9, 7], 100), Ok(Some((4..6, 6))));
        assert_eq!(next_frame(&[0xff, 0, 0, 0], 100), Err(FrameError::BadLength(-16777216)));
        assert_eq!(next_frame(&[0, 0, 1, 0], 100), Err(FrameError::BadLength(256)));
    }
}
