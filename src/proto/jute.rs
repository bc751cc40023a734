//! Jute binary encoding: the primitive reader and writer every ZooKeeper record is built from.
//!
//! Owns big-endian ints, booleans, length-prefixed strings/buffers and vectors. It never decides
//! what a record means and never allocates more than the bytes it was given can justify.

use bytes::Bytes;

/// Why a record could not be decoded. Every variant maps to MarshallingError on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The record needs more bytes than the frame holds.
    Truncated,
    /// A length prefix is negative (other than -1 for null) or exceeds the frame.
    BadLength,
    /// A field holds a value the record type does not allow.
    BadValue,
}

pub type DecodeResult<T> = Result<T, DecodeError>;

/// Reads jute primitives from one frame body.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn bool(&mut self) -> DecodeResult<bool> {
        Ok(self.u8()? != 0)
    }

    pub fn i32(&mut self) -> DecodeResult<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i64(&mut self) -> DecodeResult<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// A length prefix: `None` for -1 (null), an error for other negatives or lengths past the end.
    fn len(&mut self) -> DecodeResult<Option<usize>> {
        let n = self.i32()?;
        if n == -1 {
            return Ok(None);
        }
        if n < 0 {
            return Err(DecodeError::BadLength);
        }
        let n = n as usize;
        if n > self.remaining() {
            return Err(DecodeError::BadLength);
        }
        Ok(Some(n))
    }

    /// A ustring; null reads as "" (kazoo sends empty strings as null). Invalid UTF-8 is replaced.
    pub fn string(&mut self) -> DecodeResult<String> {
        match self.len()? {
            None => Ok(String::new()),
            Some(n) => {
                let b = self.take(n)?;
                Ok(match std::str::from_utf8(b) {
                    Ok(s) => s.to_owned(),
                    Err(_) => String::from_utf8_lossy(b).into_owned(),
                })
            }
        }
    }

    /// A buffer; null stays distinct from empty.
    pub fn buffer(&mut self) -> DecodeResult<Option<Bytes>> {
        match self.len()? {
            None => Ok(None),
            Some(n) => Ok(Some(Bytes::copy_from_slice(self.take(n)?))),
        }
    }

    /// A vector count; null reads as an empty vector. Each element needs at least `min_elem` bytes,
    /// which bounds the count by the bytes that remain.
    pub fn vec_len(&mut self, min_elem: usize) -> DecodeResult<usize> {
        let n = self.i32()?;
        if n == -1 {
            return Ok(0);
        }
        if n < 0 || (n as usize).saturating_mul(min_elem.max(1)) > self.remaining() {
            return Err(DecodeError::BadLength);
        }
        Ok(n as usize)
    }

    pub fn strings(&mut self) -> DecodeResult<Vec<String>> {
        let n = self.vec_len(4)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.string()?);
        }
        Ok(v)
    }
}

/// Writes jute primitives into a growable buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer { buf: Vec::with_capacity(64) }
    }

    /// A writer that reserves 4 bytes for the frame length, filled in by `finish_frame`.
    pub fn frame() -> Self {
        let mut w = Writer { buf: Vec::with_capacity(128) };
        w.buf.extend_from_slice(&[0, 0, 0, 0]);
        w
    }

    /// Fills in the length prefix reserved by `frame` and returns the bytes.
    pub fn finish_frame(mut self) -> Bytes {
        let n = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&n.to_be_bytes());
        Bytes::from(self.buf)
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn string(&mut self, s: &str) {
        self.i32(s.len() as i32);
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub fn buffer(&mut self, b: Option<&[u8]>) {
        match b {
            None => self.i32(-1),
            Some(b) => {
                self.i32(b.len() as i32);
                self.buf.extend_from_slice(b);
            }
        }
    }

    pub fn strings<S: AsRef<str>>(&mut self, v: &[S]) {
        self.i32(v.len() as i32);
        for s in v {
            self.string(s.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_primitives() {
        let mut w = Writer::new();
        w.i32(-7);
        w.i64(1 << 40);
        w.bool(true);
        w.string("héllo");
        w.buffer(None);
        w.buffer(Some(b""));
        w.strings(&["a", "bc"]);
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.i32().unwrap(), -7);
        assert_eq!(r.i64().unwrap(), 1 << 40);
        assert!(r.bool().unwrap());
        assert_eq!(r.string().unwrap(), "héllo");
        assert_eq!(r.buffer().unwrap(), None);
        assert_eq!(r.buffer().unwrap(), Some(Bytes::new()));
        assert_eq!(r.strings().unwrap(), vec!["a", "bc"]);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn null_string_reads_empty_and_bad_lengths_fail() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.string().unwrap(), "");
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(r.string(), Err(DecodeError::BadLength));
        let mut r = Reader::new(&[0, 0, 0, 9, b'a']);
        assert_eq!(r.buffer(), Err(DecodeError::BadLength));
        let mut r = Reader::new(&[0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(r.vec_len(4), Err(DecodeError::BadLength));
        let mut r = Reader::new(&[0, 0]);
        assert_eq!(r.i32(), Err(DecodeError::Truncated));
    }
}
