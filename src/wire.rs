//! The SSH wire encoding (RFC 4251 §5) that every other module reads and writes, and the one
//! error type for a refusal. Nothing here knows a message or a key type.
//!
//! Everything read comes from a socket or from a key the client sent: `Reader` is a cursor
//! that returns `Err` on short input instead of panicking, and no length read through it is
//! trusted before it is checked against what is left.

use std::fmt;

/// Why a request, a key or a frame's body was refused: a fixed text, logged under `-d` and
/// answered with `SSH_AGENT_FAILURE` (only `agent::Agent::handle` turns it into that reply).
/// Never carries key material: the text is `'static`, written where the check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

impl Refused {
    pub fn reason(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A cursor over untrusted bytes: every read is bounds-checked and returns `Err` on short input.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// What is left, unread.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Refused> {
        if n > self.buf.len() {
            return Err(Refused("truncated message"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, Refused> {
        let b = self.bytes(1)?;
        Ok(b.first().copied().unwrap_or_default())
    }

    pub fn u32(&mut self) -> Result<u32, Refused> {
        let b = self.bytes(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_be_bytes(a))
    }

    pub fn bool(&mut self) -> Result<bool, Refused> {
        Ok(self.u8()? != 0)
    }

    /// An SSH `string`: uint32 length, then that many bytes.
    pub fn string(&mut self) -> Result<&'a [u8], Refused> {
        let len = self.u32()?;
        let len = usize::try_from(len).map_err(|_| Refused("string too long"))?;
        self.bytes(len)
    }

    /// A `string` that must be UTF-8 (names, not comments).
    pub fn str(&mut self) -> Result<&'a str, Refused> {
        std::str::from_utf8(self.string()?).map_err(|_| Refused("name is not UTF-8"))
    }

    /// A C string field: no NUL inside (OpenSSH's `sshbuf_get_cstring`), UTF-8 here.
    pub fn cstring(&mut self) -> Result<String, Refused> {
        let b = self.string()?;
        if b.contains(&0) {
            return Err(Refused("NUL in a name"));
        }
        String::from_utf8(b.to_vec()).map_err(|_| Refused("name is not UTF-8"))
    }

    /// An SSH `mpint` that must not be negative, as OpenSSH's
    /// `sshbuf_get_bignum2_bytes_direct` reads it: the magnitude, big-endian, with the
    /// leading zeros (tolerated) stripped.
    pub fn mpint(&mut self) -> Result<&'a [u8], Refused> {
        let b = self.string()?;
        if b.first().is_some_and(|&x| x & 0x80 != 0) {
            return Err(Refused("negative integer"));
        }
        let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
        b.get(start..).ok_or(Refused("invalid integer"))
    }
}

/// Append an SSH `string` to `out`.
pub fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    // Callers pass at most MAX_MESSAGE_LEN-sized data; saturate rather than wrap just in case.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
}

/// Append an `mpint` holding the magnitude `m` (big-endian, any leading zeros).
pub fn put_mpint(out: &mut Vec<u8>, m: &[u8]) {
    let start = m.iter().position(|&x| x != 0).unwrap_or(m.len());
    let m = m.get(start..).unwrap_or_default();
    if m.first().is_some_and(|&x| x & 0x80 != 0) {
        let len = u32::try_from(m.len().saturating_add(1)).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.push(0);
        out.extend_from_slice(m);
    } else {
        put_string(out, m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded() {
        let mut r = Reader::new(&[0, 0, 0, 2, b'h', b'i', 0, 0, 0, 9, b'x']);
        assert_eq!(r.string(), Ok(&b"hi"[..]));
        assert!(r.string().is_err());
        assert!(Reader::new(&[0, 0]).u32().is_err());
        assert!(Reader::new(&[]).u8().is_err());
    }

    #[test]
    fn mpints_round_trip() {
        for m in [&[][..], &[1], &[0x7f, 0xff], &[0x80], &[0, 0, 0x80, 1]] {
            let mut out = Vec::new();
            put_mpint(&mut out, m);
            let stripped: Vec<u8> = m.iter().copied().skip_while(|&b| b == 0).collect();
            assert_eq!(Reader::new(&out).mpint(), Ok(stripped.as_slice()), "{m:?}");
        }
        // Negative integers are refused.
        let mut neg = Vec::new();
        put_string(&mut neg, &[0x80]);
        assert!(Reader::new(&neg).mpint().is_err());
    }

    #[test]
    fn cstrings_refuse_nul() {
        let mut b = Vec::new();
        put_string(&mut b, b"a\0b");
        assert!(Reader::new(&b).cstring().is_err());
    }
}
